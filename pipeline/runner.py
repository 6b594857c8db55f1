"""Composition root: configuration -> components -> the frame loop -> outputs.

The only module that reads configuration and knows every stage. Per tick (one
time-aligned frame per camera) it detects on all cameras in one call, embeds
the crops of all cameras in shared batches, updates each camera's tracker and
tracklet builder, and streams per-camera rows to disk.

Association ``mode: offline`` (the default for recorded footage): after the last tick
the tracklets are associated across cameras and ``trajectories.csv`` is written from
the streamed rows with the global ids filled in. ``mode: online`` (the default for live
cameras): global ids are assigned while the run goes on, with revisions bounded by a
lag; rows carry the id known when written and every assignment/revision is logged.

Live cameras are ticked by the wall clock until a duration, a tick limit or
SIGINT/SIGTERM; every file is flushed at least every ``flush_s`` seconds and written
in whole lines, so a killed run leaves parseable files.

Files written in ``out_dir`` (schema in README.md):

* ``tracks_local.csv``  (offline) per-camera rows as they happen (global_id = -1),
  flushed regularly, so an interrupted run keeps what it saw;
* ``trajectories.csv``  the same rows with cross-camera global ids (online: the id
  known at write time, -1 before the first assignment);
* ``revisions.csv``, ``trajectories_final.csv``  (online) the id assignments and
  revisions, and the rows rewritten with the final ids at the end of the run;
* ``mot/<camera>.txt``  MOTChallenge rows with local track ids;
* ``summary.json``      cameras (with health counters when live), frames, identities,
  per-stage ms, throughput;
* ``plots/*.png`` and, with video enabled, ``video/<camera>.mp4``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.association import ASSOCIATORS
from pipeline.config import RunConfig, check_params
from pipeline.runtime import (
    Housekeeping,
    live_cameras,
    multi_camera_identities,
    restart_after_gaps,
    stop_on_signals,
    stream_options_for,
)
from pipeline.types import Detections, Frame, GlobalTrack, Tracklet, Tracks

__all__ = ["RunOptions", "run", "StageTimer"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """Command-line overrides of a config for one run.

    Attributes:
        max_frames: Stop after this many ticks.
        duration_s: Stop after this many wall-clock seconds (live cameras, or any run).
        health_interval_s: Seconds between health log lines of live cameras.
        flush_s: Longest time written rows stay in memory before reaching the files.
        stream_options: ``StreamSource`` keyword arguments for every live camera
            (timeouts, backoff, queue size); they override each camera's ``stream``.
        outage_reset_s: A live camera silent this long has its tracks ended (so a
            person seen after the outage is not glued to a track from before it).
        handle_signals: SIGINT/SIGTERM stop the run cleanly (main thread only).
    """

    max_frames: int | None = None
    save_video: bool | None = None
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    duration_s: float | None = None
    health_interval_s: float = 30.0
    flush_s: float = 2.0
    stream_options: Mapping[str, Any] | None = None
    outage_reset_s: float = 3.0
    handle_signals: bool = True


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
        kind = "association mode" if section == "association" else section
        raise ValueError(f"{where}: unknown {kind} {name!r}; choose one of: "
                         f"{', '.join(sorted(family))}") from None
    check_params(cls, params, section, where)
    return cls(**params)


class _Embedding:
    """Chooses which detections to embed (size, score, schedule) and fills their rows.

    One :class:`~pipeline.reid.schedule.EmbeddingScheduler` per camera decides, from
    the previous frame's tracks, which eligible detections need appearance now; the
    rest keep zero rows, which the tracker and tracklet builder read as "no appearance".
    """

    def __init__(self, embedder: Any, *, camera_ids: Sequence[str], min_score: float,
                 min_height_px: float, refresh_frames: int) -> None:
        from pipeline.reid.schedule import EmbeddingScheduler

        self.embedder = embedder
        self.min_score = min_score
        self.min_height_px = min_height_px
        self.schedulers = {cid: EmbeddingScheduler(refresh_frames=refresh_frames)
                           for cid in camera_ids}
        self.eligible = 0  # detections good enough to embed
        self.embedded = 0  # of those, embedded (the schedule skipped the rest)

    def __call__(self, camera_ids: Sequence[str], images: Sequence[np.ndarray],
                 dets: list[Detections]) -> list[Detections]:
        keep = []
        for cid, d in zip(camera_ids, dets, strict=True):
            eligible = (d.score >= self.min_score) & (
                (d.xyxy[:, 3] - d.xyxy[:, 1]) >= self.min_height_px)
            keep.append(self.schedulers[cid].select(d, eligible))
            self.eligible += int(eligible.sum())
        vectors = self.embedder.embed(images, [d.xyxy[k] for d, k in zip(dets, keep, strict=True)])
        dim = self.embedder.embedding_dim
        out = []
        for d, k, v in zip(dets, keep, vectors, strict=True):
            full = np.zeros((len(d), dim), np.float32)
            full[k] = v
            self.embedded += int(k.sum())
            out.append(Detections(xyxy=d.xyxy, score=d.score, embedding=full))
        return out

    def observe(self, camera_id: str, tracks: Tracks) -> None:
        """Feed a camera's tracker output back to its scheduler."""
        self.schedulers[camera_id].observe(tracks)

    def stats(self) -> dict[str, Any]:
        """Counts for the run summary."""
        share = self.embedded / self.eligible if self.eligible else 0.0
        return {"eligible_detections": self.eligible, "embedded_detections": self.embedded,
                "embedded_share": round(share, 4)}


def run(config: RunConfig, out_dir: Path, options: RunOptions = RunOptions()) -> dict[str, Any]:
    """Run the whole pipeline on the configured cameras and write the outputs.

    Live cameras (rtsp://, http(s)://, webcam) are read until ``options.duration_s``,
    ``options.max_frames`` ticks, SIGINT or SIGTERM; the outputs are finished and the
    summary written in every case.

    Returns:
        The summary that was written to ``out_dir/summary.json``.
    """
    from pipeline.export import MotWriter, RevisionCsvWriter, TrajectoryCsvWriter
    from pipeline.sources import (
        CameraSet,
        early_endings,
        is_stream_uri,
        open_source,
        redact_url,
    )
    from pipeline.tracking import TRACKERS, TrackletBuilder

    where = config.source_file
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    live = live_cameras(config, is_stream_uri)
    # Before any model loads, so a config typo fails at once.
    assoc_params = dict(config.association.params)
    mode = str(assoc_params.pop("mode", "online" if live else "offline"))
    associator = _build(ASSOCIATORS, mode, assoc_params, "association", where)
    online = mode == "online"
    device = options.device or config.device
    threads = _set_threads(options.threads if options.threads is not None else config.threads)
    save_video = config.output.save_video if options.save_video is None else options.save_video
    if live and save_video:
        logger.warning("annotated video is not rendered for live cameras (it re-reads the "
                       "sources); use the trajectories instead")
        save_video = False

    embed: _Embedding | None = None
    if config.reid.enabled:
        from pipeline.reid.embedder import CropEmbedder

        embedder = CropEmbedder(model=config.reid.model, weights=Path(config.reid.weights),
                                device=device, batch_size=config.reid.batch_size,
                                threads=threads, precision=config.reid.precision,
                                backend=config.reid.backend)
        embed = _Embedding(embedder, camera_ids=[c.id for c in config.cameras],
                           min_score=config.reid.min_score,
                           min_height_px=config.reid.min_height_px,
                           refresh_frames=config.reid.refresh_frames)
    detector = _camera_detector(config, device, where)
    _set_threads(threads)  # importing ultralytics resets torch's thread count
    check_params(TrackletBuilder, dict(config.tracklets), "tracklets", where)

    timer = StageTimer()
    camera_ids = [c.id for c in config.cameras]
    frames_per_camera = dict.fromkeys(camera_ids, 0)
    sizes: dict[str, tuple[int, int]] = {}
    health: dict[str, dict[str, Any]] = {}
    closed: list[Tracklet] = []
    n_tracklets = 0
    stop = threading.Event()
    wall_start = time.perf_counter()
    epoch = time.monotonic()
    with ExitStack() as stack:
        interrupted = stack.enter_context(stop_on_signals(stop, options.handle_signals))
        sources = [
            stack.enter_context(open_source(
                camera_id=c.id, uri=c.source, fps=c.fps,
                stream_options=stream_options_for(c, epoch, options.stream_options,
                                                  options.duration_s) if live else None))
            for c in config.cameras
        ]
        fps = {s.camera_id: s.fps for s in sources}
        trackers = {cid: _build(TRACKERS, config.tracker.name, dict(config.tracker.params),
                                "tracker", where) for cid in camera_ids}
        builders = {cid: TrackletBuilder(camera_id=cid, **config.tracklets)
                    for cid in camera_ids}
        csv_name = "trajectories.csv" if online else "tracks_local.csv"
        rows_csv = stack.enter_context(TrajectoryCsvWriter(out_dir / csv_name,
                                                           flush_s=options.flush_s))
        revisions_csv = stack.enter_context(RevisionCsvWriter(
            out_dir / "revisions.csv", flush_s=options.flush_s)) if online else None
        mot = {cid: stack.enter_context(MotWriter(out_dir / "mot" / f"{cid}.txt"))
               for cid in camera_ids} if config.output.mot else {}
        camera_set = CameraSet(sources=sources, max_frames=options.max_frames, live=live,
                               duration_s=options.duration_s, stop=stop, yield_empty=True)
        ticks = iter(camera_set)
        house = Housekeeping(flush_s=options.flush_s, health_interval_s=options.health_interval_s,
                             camera_set=camera_set, writers=[rows_csv, revisions_csv,
                                                             *mot.values()])
        last_seen: dict[str, float] = {}
        now_s = 0.0
        try:
            for tick in _progress(ticks, sources, options):
                if stop.is_set():
                    break
                if options.duration_s is not None and not live and \
                        time.perf_counter() - wall_start >= options.duration_s:
                    break
                if live:
                    closed += restart_after_gaps(tick, last_seen, trackers, builders,
                                                  options.outage_reset_s)
                results = _process_tick(tick, detector=detector, embed=embed,
                                        trackers=trackers, builders=builders, mot=mot,
                                        timer=timer) if tick else []
                if tick:
                    now_s = max(f.timestamp_s for f in tick)
                if online and house.association_due(now_s):
                    with timer("associate"):
                        finished = closed + [t for b in builders.values() for t in b.finished()]
                        closed, n_tracklets = [], n_tracklets + len(finished)
                        snapshots = [t for b in builders.values()
                                     for t in b.snapshots(min_frames=associator.min_frames)]
                        revisions_csv.write(associator.update(
                            now_s=now_s, open_tracklets=snapshots, finished=finished))
                with timer("write"):
                    for frame, tracks in results:
                        gids = ([associator.global_id(frame.camera_id, t)
                                 for t in tracks.track_id.tolist()] if online else None)
                        rows_csv.write(camera=frame.camera_id, frame=frame.index,
                                       timestamp_s=frame.timestamp_s, tracks=tracks,
                                       global_ids=gids)
                        frames_per_camera[frame.camera_id] += 1
                        sizes.setdefault(frame.camera_id, frame.size_wh)
                house.tick()
        except KeyboardInterrupt:
            interrupted.append("SIGINT")
            logger.warning("interrupted: finishing with the frames processed so far")
        health = camera_set.health()
        endings = {} if live else early_endings(sources, camera_set.ended, frames_per_camera)
        if live:
            fps = {s.camera_id: s.fps for s in sources}
        with timer("associate"):
            tracklets: list[Tracklet] = closed + [t for b in builders.values()
                                                  for t in b.finish()]
            n_tracklets += len(tracklets)
            if online:
                revisions_csv.write(associator.finish(now_s=now_s, finished=tracklets))
                global_of: dict[tuple[str, int], int] = {}
            else:
                identities = associator.associate(tracklets) if embed is not None else [
                    GlobalTrack(global_id=i, members=(t.key,))
                    for i, t in enumerate(tracklets, 1)]
                global_of = {key: g.global_id for g in identities for key in g.members}
                # Tracks too short to be tracklets are not associated, but their rows
                # still get an id: one identity each, numbered after the others.
                next_id = max(global_of.values(), default=0) + 1
                for cid, builder in builders.items():
                    for tid in builder.short_track_ids:
                        if (cid, tid) not in global_of:
                            identities.append(GlobalTrack(global_id=next_id,
                                                          members=((cid, tid),)))
                            global_of[(cid, tid)] = next_id
                            next_id += 1
    loop_s = time.perf_counter() - wall_start

    with timer("export"):
        if online:
            from pipeline.export import final_global_ids, rewrite_global_ids

            global_of = final_global_ids(out_dir / "revisions.csv")
            rows = rewrite_global_ids(out_dir / "trajectories.csv",
                                      out_dir / "trajectories_final.csv", global_of)
            n_ids = len(set(global_of.values()))
            n_multi = multi_camera_identities(global_of)
        else:
            rows = _write_trajectories(out_dir, global_of)
            n_ids = len(identities)
            n_multi = sum(len(g.cameras) > 1 for g in identities)
        final_csv = "trajectories_final.csv" if online else "trajectories.csv"
        outputs = _write_extras(out_dir, config, global_of, fps, sizes, save_video, options,
                                final_csv)
    total_frames = sum(frames_per_camera.values())
    summary = {
        "config": where,
        "cameras": [{"id": c.id, "source": redact_url(c.source), "fps": fps.get(c.id),
                     "frames": frames_per_camera[c.id], "size_wh": sizes.get(c.id),
                     **({"health": health[c.id]} if c.id in health else {}),
                     **endings.get(c.id, {})}
                    for c in config.cameras],
        "live": live,
        "association": mode,
        "camera_frames": total_frames,
        "ticks": max(frames_per_camera.values(), default=0),
        "tracklets": n_tracklets,
        "identities": n_ids,
        "identities_multi_camera": n_multi,
        # of the identities, tracks shorter than tracklets.min_length (not associated)
        "identities_short_tracks": sum(len(b.short_track_ids) for b in builders.values())
        if not online else 0,
        "revisions": associator.revisions if online else 0,
        "rows": rows,
        "reid": embed.stats() if embed is not None else None,
        "stage_ms": {k: round(v, 1) for k, v in timer.totals_ms.items()},
        "stage_ms_per_camera_frame": {k: round(v / max(total_frames, 1), 2)
                                      for k, v in timer.totals_ms.items()},
        "loop_s": round(loop_s, 2),
        "camera_frames_per_s": round(total_frames / loop_s, 2) if loop_s > 0 else None,
        "interrupted": bool(interrupted),
        "stopped_by": interrupted[0] if interrupted else None,
        "device": device,
        "threads": threads,
        "machine": platform.processor() or platform.machine(),
        "outputs": outputs,
    }
    temporary = out_dir / "summary.json.part"
    temporary.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(temporary, out_dir / "summary.json")
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


def _camera_detector(config: RunConfig, device: str, where: str) -> Any:
    """The configured detector wrapped with each camera's detection options.

    Input size, tiles and ROI per camera (``pipeline.detection.views``; cameras without a
    ``detection`` mapping get the defaults). Cameras whose plan is the detector's own
    input on the whole frame share one call to the configured detector, as before.
    """
    from pipeline.detection import DETECTORS
    from pipeline.detection.multiview import CameraDetector
    from pipeline.detection.views import ViewOptions

    params = {"device": device, **config.detector.params}
    base = _build(DETECTORS, config.detector.name, params, "detector", where)
    return CameraDetector(
        base=base, views={c.id: c.detection or ViewOptions() for c in config.cameras},
        where=where,
        make_detector=lambda imgsz: _build(DETECTORS, config.detector.name,
                                           {**params, "imgsz": imgsz}, "detector", where))


def _process_tick(tick: list[Frame], *, detector: Any, embed: _Embedding | None,
                  trackers: dict[str, Any],
                  builders: dict[str, Any], mot: dict[str, Any],
                  timer: StageTimer) -> list[tuple[Frame, Tracks]]:
    """Detect, embed and track one tick; returns each frame with its tracks."""
    images = [f.image_bgr for f in tick]
    with timer("detect"):
        detections = detector.detect(images, camera_ids=[f.camera_id for f in tick])
    if embed is not None:
        with timer("embed"):
            detections = embed([f.camera_id for f in tick], images, detections)
    results = []
    for frame, dets in zip(tick, detections, strict=True):
        cid = frame.camera_id
        with timer("track"):
            tracks = trackers[cid].update(dets)
            if embed is not None:
                embed.observe(cid, tracks)
            builders[cid].update(frame.index, frame.timestamp_s, tracks, dets.xyxy,
                                 frame.size_wh)
        if cid in mot:
            with timer("write"):
                mot[cid].write(frame.index, tracks)
        results.append((frame, tracks))
    return results


def _write_trajectories(out_dir: Path, global_of: dict[tuple[str, int], int]) -> int:
    """Stream tracks_local.csv into trajectories.csv with global ids; returns rows."""
    from pipeline.export import rewrite_global_ids

    return rewrite_global_ids(out_dir / "tracks_local.csv", out_dir / "trajectories.csv",
                              global_of)


def _write_extras(out_dir: Path, config: RunConfig, global_of: dict[tuple[str, int], int],
                  fps: dict[str, float], sizes: dict[str, tuple[int, int]], save_video: bool,
                  options: RunOptions, final_csv: str = "trajectories.csv") -> dict[str, Any]:
    outputs: dict[str, Any] = {"trajectories": "trajectories.csv"}
    if final_csv != "trajectories.csv":
        outputs["trajectories_final"] = final_csv
        outputs["revisions"] = "revisions.csv"
    if config.output.mot:
        outputs["mot"] = {c.id: f"mot/{c.id}.txt" for c in config.cameras}
    if config.output.plots:
        from pipeline.export import plot_trajectories

        outputs["plots"] = [str(p.relative_to(out_dir)) for p in
                            plot_trajectories(out_dir / final_csv, out_dir / "plots")]
    if save_video:
        from pipeline.export import render_videos

        outputs["video"] = [str(p.relative_to(out_dir)) for p in render_videos(
            config=config, trajectories=out_dir / final_csv,
            out_dir=out_dir / "video", max_frames=options.max_frames)]
    return outputs
