"""Composition root: configuration -> components -> the frame loop -> outputs.

The only module that reads configuration and knows every stage. Per tick (one
time-aligned frame per camera) it detects on all cameras in one call, embeds
the crops of all cameras in shared batches, updates each camera's tracker and
tracklet builder, and streams per-camera rows to disk. After the last tick the
tracklets are associated across cameras and ``trajectories.csv`` is written
from the streamed rows with the global ids filled in.

Files written in ``out_dir`` (schema in README.md):

* ``tracks_local.csv``  per-camera rows as they happen (global_id = -1),
  flushed regularly, so an interrupted run keeps what it saw;
* ``trajectories.csv``  the same rows with cross-camera global ids;
* ``mot/<camera>.txt``  MOTChallenge rows with local track ids;
* ``summary.json``      cameras, frames, identities, per-stage ms, throughput;
* ``plots/*.png`` and, with video enabled, ``video/<camera>.mp4``.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.association import ASSOCIATORS
from pipeline.config import RunConfig, check_params
from pipeline.types import Detections, Frame, GlobalTrack, Tracklet

__all__ = ["RunOptions", "run", "StageTimer"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """Command-line overrides of a config for one run."""

    max_frames: int | None = None
    save_video: bool | None = None
    device: str | None = None
    threads: int | None = None
    progress: bool = True


@dataclass
class StageTimer:
    """Wall-clock milliseconds spent per pipeline stage."""

    totals_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals_ms[stage] += (time.perf_counter() - start) * 1000.0


def _set_threads(threads: int | None) -> int:
    import torch

    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    return torch.get_num_threads()


def _build(family: dict[str, Any], name: str, params: dict[str, Any], section: str,
           where: str) -> Any:
    try:
        cls = family[name]
    except KeyError:
        raise ValueError(f"{where}: unknown {section} {name!r}; choose one of: "
                         f"{', '.join(sorted(family))}") from None
    check_params(cls, params, section, where)
    return cls(**params)


class _Embedding:
    """Selects which detections are worth embedding and fills Detections.embedding."""

    def __init__(self, embedder: Any, *, min_score: float, min_height_px: float) -> None:
        self.embedder = embedder
        self.min_score = min_score
        self.min_height_px = min_height_px

    def __call__(self, images: Sequence[np.ndarray], dets: list[Detections]) -> list[Detections]:
        keep = [
            (d.score >= self.min_score) & ((d.xyxy[:, 3] - d.xyxy[:, 1]) >= self.min_height_px)
            for d in dets
        ]
        vectors = self.embedder.embed(images, [d.xyxy[k] for d, k in zip(dets, keep, strict=True)])
        dim = self.embedder.embedding_dim
        out = []
        for d, k, v in zip(dets, keep, vectors, strict=True):
            # Rows left unembedded stay zero: zero vectors carry no appearance and the
            # tracker and tracklet builder ignore them.
            full = np.zeros((len(d), dim), np.float32)
            full[k] = v
            out.append(Detections(xyxy=d.xyxy, score=d.score, embedding=full))
        return out


def run(config: RunConfig, out_dir: Path, options: RunOptions = RunOptions()) -> dict[str, Any]:
    """Run the whole pipeline on the configured cameras and write the outputs.

    Returns:
        The summary that was written to ``out_dir/summary.json``.
    """
    from pipeline.detection import DETECTORS
    from pipeline.export import MotWriter, TrajectoryCsvWriter
    from pipeline.sources import open_source, synchronise
    from pipeline.tracking import TRACKERS, TrackletBuilder

    where = config.source_file
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = options.device or config.device
    threads = _set_threads(options.threads if options.threads is not None else config.threads)
    save_video = config.output.save_video if options.save_video is None else options.save_video

    embed: Callable[[Sequence[np.ndarray], list[Detections]], list[Detections]] | None = None
    if config.reid.enabled:
        from pipeline.reid.embedder import CropEmbedder

        embedder = CropEmbedder(weights=Path(config.reid.weights), device=device,
                                batch_size=config.reid.batch_size, threads=threads)
        embed = _Embedding(embedder, min_score=config.reid.min_score,
                           min_height_px=config.reid.min_height_px)
    detector = _build(DETECTORS, config.detector.name,
                      {"device": device, **config.detector.params}, "detector", where)
    _set_threads(threads)  # importing ultralytics resets torch's thread count
    check_params(TrackletBuilder, dict(config.tracklets), "tracklets", where)
    associator = _build(ASSOCIATORS, "offline", dict(config.association.params),
                        "association", where)

    timer = StageTimer()
    camera_ids = [c.id for c in config.cameras]
    frames_per_camera = dict.fromkeys(camera_ids, 0)
    sizes: dict[str, tuple[int, int]] = {}
    interrupted = False
    wall_start = time.perf_counter()
    with ExitStack() as stack:
        sources = [
            stack.enter_context(open_source(camera_id=c.id, uri=c.source, fps=c.fps))
            for c in config.cameras
        ]
        fps = {s.camera_id: s.fps for s in sources}
        trackers = {cid: _build(TRACKERS, config.tracker.name, dict(config.tracker.params),
                                "tracker", where) for cid in camera_ids}
        builders = {cid: TrackletBuilder(camera_id=cid, **config.tracklets)
                    for cid in camera_ids}
        local_csv = stack.enter_context(TrajectoryCsvWriter(out_dir / "tracks_local.csv"))
        mot = {cid: stack.enter_context(MotWriter(out_dir / "mot" / f"{cid}.txt"))
               for cid in camera_ids} if config.output.mot else {}
        ticks = synchronise(sources, max_frames=options.max_frames)
        progress = _progress(ticks, sources, options)
        try:
            for tick in progress:
                _process_tick(tick, detector=detector, embed=embed, trackers=trackers,
                              builders=builders, local_csv=local_csv, mot=mot, timer=timer)
                for frame in tick:
                    frames_per_camera[frame.camera_id] += 1
                    sizes.setdefault(frame.camera_id, frame.size_wh)
        except KeyboardInterrupt:
            interrupted = True
            logger.warning("interrupted: finishing with the frames processed so far")
    loop_s = time.perf_counter() - wall_start

    with timer("associate"):
        tracklets: list[Tracklet] = [t for b in builders.values() for t in b.finish()]
        identities = associator.associate(tracklets) if embed is not None else [
            GlobalTrack(global_id=i, members=(t.key,)) for i, t in enumerate(tracklets, 1)
        ]
    global_of = {key: g.global_id for g in identities for key in g.members}
    with timer("export"):
        rows = _write_trajectories(out_dir, global_of)
        outputs = _write_extras(out_dir, config, global_of, fps, sizes, save_video, options)
    total_frames = sum(frames_per_camera.values())
    summary = {
        "config": where,
        "cameras": [{"id": c.id, "source": c.source, "fps": fps.get(c.id),
                     "frames": frames_per_camera[c.id], "size_wh": sizes.get(c.id)}
                    for c in config.cameras],
        "camera_frames": total_frames,
        "ticks": max(frames_per_camera.values(), default=0),
        "tracklets": len(tracklets),
        "identities": len(identities),
        "identities_multi_camera": sum(len(g.cameras) > 1 for g in identities),
        "rows": rows,
        "stage_ms": {k: round(v, 1) for k, v in timer.totals_ms.items()},
        "stage_ms_per_camera_frame": {k: round(v / max(total_frames, 1), 2)
                                      for k, v in timer.totals_ms.items()},
        "loop_s": round(loop_s, 2),
        "camera_frames_per_s": round(total_frames / loop_s, 2) if loop_s > 0 else None,
        "interrupted": interrupted,
        "device": device,
        "threads": threads,
        "machine": platform.processor() or platform.machine(),
        "outputs": outputs,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _progress(ticks: Iterator[list[Frame]], sources: Sequence[Any],
              options: RunOptions) -> Iterator[list[Frame]]:
    if not options.progress:
        return ticks
    from tqdm import tqdm

    counts = [s.frame_count for s in sources if getattr(s, "frame_count", None)]
    total = max(counts) if counts else None
    if total is not None and options.max_frames is not None:
        total = min(total, options.max_frames)
    return tqdm(ticks, total=total, unit="tick", desc="mtmc run", dynamic_ncols=True)


def _process_tick(tick: list[Frame], *, detector: Any, embed: Any, trackers: dict[str, Any],
                  builders: dict[str, Any], local_csv: Any, mot: dict[str, Any],
                  timer: StageTimer) -> None:
    images = [f.image_bgr for f in tick]
    with timer("detect"):
        detections = detector.detect(images)
    if embed is not None:
        with timer("embed"):
            detections = embed(images, detections)
    for frame, dets in zip(tick, detections, strict=True):
        cid = frame.camera_id
        with timer("track"):
            tracks = trackers[cid].update(dets)
            builders[cid].update(frame.index, frame.timestamp_s, tracks, dets.xyxy,
                                 frame.size_wh)
        with timer("write"):
            local_csv.write(camera=cid, frame=frame.index, timestamp_s=frame.timestamp_s,
                            tracks=tracks, global_ids=None)
            if cid in mot:
                mot[cid].write(frame.index, tracks)


def _write_trajectories(out_dir: Path, global_of: dict[tuple[str, int], int]) -> int:
    """Stream tracks_local.csv into trajectories.csv with global ids; returns rows."""
    from pipeline.export import rewrite_global_ids

    return rewrite_global_ids(out_dir / "tracks_local.csv", out_dir / "trajectories.csv",
                              global_of)


def _write_extras(out_dir: Path, config: RunConfig, global_of: dict[tuple[str, int], int],
                  fps: dict[str, float], sizes: dict[str, tuple[int, int]], save_video: bool,
                  options: RunOptions) -> dict[str, Any]:
    outputs: dict[str, Any] = {"trajectories": "trajectories.csv"}
    if config.output.mot:
        outputs["mot"] = {c.id: f"mot/{c.id}.txt" for c in config.cameras}
    if config.output.plots:
        from pipeline.export import plot_trajectories

        outputs["plots"] = [str(p.relative_to(out_dir)) for p in
                            plot_trajectories(out_dir / "trajectories.csv", out_dir / "plots")]
    if save_video:
        from pipeline.export import render_videos

        outputs["video"] = [str(p.relative_to(out_dir)) for p in render_videos(
            config=config, trajectories=out_dir / "trajectories.csv",
            out_dir=out_dir / "video", max_frames=options.max_frames)]
    return outputs
