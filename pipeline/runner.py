"""Composition root: configuration -> components -> the frame loop -> outputs.

``run()`` reads as build -> loop -> finish. :func:`pipeline.assembly.build_run` builds
the components from the config; per tick (one time-aligned frame per camera) the
cameras' work (:class:`pipeline.executor.InProcessCameras`: batched detection and
embedding, per-camera tracking and tracklets) yields each frame's tracks, the
association (whichever mode) takes tracklet events when it says it is due and tells
the global id known now, and every output sink receives the rows, the id decisions
and, at the end, the final identities. The loop knows neither the mode nor the outputs.

Association ``mode: offline`` (the default for recorded footage): after the last tick
the tracklets are associated across cameras and ``trajectories.csv`` is written from
the streamed rows with the global ids filled in. ``mode: online`` (the default for live
cameras): global ids are assigned while the run goes on, with revisions bounded by a
lag; rows carry the id known when written and every assignment/revision is logged.

Live cameras are ticked by the wall clock until a duration, a tick limit or
SIGINT/SIGTERM; every file is flushed at least every ``flush_s`` seconds and written
in whole lines, so a killed run leaves parseable files.

Files written in ``out_dir`` by the sinks (schema in README.md):

* ``tracks_local.csv``  (offline) per-camera rows as they happen (global_id = -1),
  flushed regularly, so an interrupted run keeps what it saw;
* ``trajectories.csv``  the same rows with cross-camera global ids (online: the id
  known at write time, -1 before the first assignment);
* ``revisions.csv``, ``trajectories_final.csv``  (online) the id assignments and
  revisions, and the rows rewritten with the final ids at the end of the run;
* ``mot/<camera>.txt``  MOTChallenge rows with local track ids;
* ``run.sqlite``        the run store (rows, tracklets with embeddings and best crops,
  identities, revisions; committed per flush), read by ``mtmc query`` / ``mtmc review``;
* ``summary.json``      cameras (with health counters when live), frames, identities,
  per-stage ms, throughput;
* ``plots/*.png`` and, with video enabled, ``video/<camera>.mp4``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.assembly import RunParts, build_run
from pipeline.association import FloorCue
from pipeline.config import RunConfig, RunOptions
from pipeline.executor import in_process
from pipeline.runtime import StageTimer
from pipeline.sources import early_endings
from pipeline.types import Frame, FrameTracks, Identities

__all__ = ["RunOptions", "run", "StageTimer"]

logger = logging.getLogger(__name__)


@dataclass
class _Progress:
    """What the loop counted: per-camera frames and sizes, rows, the run clock."""

    frames: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    rows: int = 0
    now_s: float = 0.0


def run(config: RunConfig, out_dir: Path, options: RunOptions | None = None) -> dict[str, Any]:
    """Run the whole pipeline on the configured cameras and write the outputs.

    Live cameras (rtsp://, http(s)://, webcam) are read until ``options.duration_s``,
    ``options.max_frames`` ticks, SIGINT or SIGTERM; the outputs are finished and the
    summary written in every case.

    Returns:
        The summary that was written to ``out_dir/summary.json``.
    """
    options = options if options is not None else RunOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = _Progress(frames=dict.fromkeys((c.id for c in config.cameras), 0))
    with ExitStack() as stack:
        parts = build_run(config, out_dir, options, stack, executor=_executor(config, options))
        try:
            for tick in _ticks(parts, options):
                _step(parts, tick, progress)
        except KeyboardInterrupt:
            parts.interrupted.append("SIGINT")
            logger.warning("interrupted: finishing with the frames processed so far")
        fps = {s.camera_id: s.fps for s in parts.sources}
        _write(parts, parts.cameras.drain(), progress)  # rows held for interpolation
        with parts.timer("associate"):
            finished, short = parts.cameras.finish()
            parts.sinks.on_tracklets(finished)
            parts.sinks.on_revisions(parts.association.finish(
                now_s=progress.now_s, finished=finished, short_tracks=short))
            identities = parts.association.identities()
        # After ``finish``: Ray workers report their trackers' fields as they end.
        cameras = _camera_fields(parts, progress)
        parts.sinks.on_identities(identities)
    loop_s = time.perf_counter() - parts.wall_start
    with parts.timer("export"):
        outputs = parts.sinks.close()
    summary = _summary(config, parts, progress, identities, cameras=cameras, fps=fps,
                       loop_s=loop_s, outputs=outputs)
    temporary = out_dir / "summary.json.part"
    temporary.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(temporary, out_dir / "summary.json")
    return summary


def _executor(config: RunConfig, options: RunOptions) -> Any:
    """Where the cameras' work runs: this process, or Ray actors (imported only then)."""
    if options.ray_address is None and config.executor.name != "ray":
        return in_process
    from pipeline.ray_executor import on_ray

    return on_ray


def _ticks(parts: RunParts, options: RunOptions) -> Iterator[list[Frame]]:
    """The run's ticks until the sources end or a stop condition holds."""
    for tick in _progress(parts.ticks, parts.sources, options):
        if parts.stop.is_set():
            return
        if options.duration_s is not None and not parts.live and \
                time.perf_counter() - parts.wall_start >= options.duration_s:
            return
        yield tick


def _step(parts: RunParts, tick: list[Frame], progress: _Progress) -> None:
    """One tick: the cameras' work, association when due, rows to the sinks."""
    results = parts.cameras.process(tick)
    if tick:
        progress.now_s = max(f.timestamp_s for f in tick)
    association = parts.association
    if association.due(progress.now_s):
        with parts.timer("associate"):
            snapshots, finished = parts.cameras.events(association.snapshot_s)
            parts.sinks.on_tracklets(finished)
            parts.sinks.on_revisions(association.update(
                now_s=progress.now_s, open_tracklets=snapshots, finished=finished))
    _write(parts, results, progress)


def _write(parts: RunParts, results: list, progress: _Progress) -> None:
    """Rows of the cameras' results to the sinks, with their global ids."""
    association = parts.association
    with parts.timer("write"):
        for frame, tracks, crops in results:
            cid = frame.camera_id
            ids = [association.global_id(cid, t) for t in tracks.track_id.tolist()]
            parts.sinks.on_rows(FrameTracks(
                camera_id=cid, frame_index=frame.index, timestamp_s=frame.timestamp_s,
                size_wh=frame.size_wh, tracks=tracks, global_ids=ids, crops=crops,
                floor_xy=parts.floor.boxes(cid, tracks.xyxy, frame.size_wh)))
            progress.frames[cid] += 1
            progress.sizes.setdefault(cid, frame.size_wh)
            progress.rows += len(tracks)
    parts.house.tick()


def _camera_fields(parts: RunParts, progress: _Progress) -> dict[str, dict[str, Any]]:
    """Per camera, the summary fields of how it went: live cameras' health counters, and
    whether a recorded camera ended far too early (``pipeline.sources.endings``)."""
    health = parts.camera_set.health()
    endings = {} if parts.live else early_endings(parts.sources, parts.camera_set.ended,
                                                   progress.frames)
    executor = parts.cameras.camera_fields()
    return {c: {**({"health": health[c]} if c in health else {}), **endings.get(c, {}),
                **executor.get(c, {})}
            for c in progress.frames}


def _summary(config: RunConfig, parts: RunParts, progress: _Progress, identities: Identities,
             *, cameras: dict[str, dict[str, Any]], fps: dict[str, float], loop_s: float,
             outputs: dict[str, Any]) -> dict[str, Any]:
    """The run summary (``summary.json``); ``cameras``: per camera, extra fields (live
    health counters, how a recorded camera ended)."""
    from pipeline.sources import redact_url

    timer = parts.timer
    total_frames = sum(progress.frames.values())
    embedding = parts.cameras.embedding
    return {
        "config": config.source_file,
        "cameras": [{"id": c.id, "source": redact_url(c.source), "fps": fps.get(c.id),
                     "frames": progress.frames[c.id], "size_wh": progress.sizes.get(c.id),
                     **cameras[c.id]}
                    for c in config.cameras],
        "live": parts.live,
        "association": parts.association.mode,
        # cameras with a ground-plane calibration, and whether their floor positions
        # joined association (association.ground)
        "floor": {"calibrated_cameras": [c.id for c in config.cameras
                                         if c.id in parts.floor.calibrations],
                  "ground_cue": any(isinstance(t, FloorCue) for t in parts.association.terms)},
        "camera_frames": total_frames,
        "ticks": max(progress.frames.values(), default=0),
        "tracklets": identities.tracklets,
        # one count: every distinct global id, including the short tracks' own ones
        "identities": identities.count,
        "identities_multi_camera": identities.multi_camera,
        # of the identities, tracks shorter than tracklets.min_length_s (not associated)
        "identities_short_tracks": identities.short_tracks,
        "revisions": identities.revisions,
        "rows": progress.rows,
        # The detector saw every N-th frame of each camera; rows between are predicted.
        "detect_every": config.detect_every,
        "reid": embedding.stats() if embedding is not None else None,
        "stage_ms": {k: round(v, 1) for k, v in timer.totals_ms.items()},
        "stage_ms_per_camera_frame": {k: round(v / max(total_frames, 1), 2)
                                      for k, v in timer.totals_ms.items()},
        "loop_s": round(loop_s, 2),
        "camera_frames_per_s": round(total_frames / loop_s, 2) if loop_s > 0 else None,
        "interrupted": bool(parts.interrupted),
        "stopped_by": parts.interrupted[0] if parts.interrupted else None,
        "executor": parts.cameras.describe(),
        "device": parts.device,
        "threads": parts.threads,
        "machine": platform.processor() or platform.machine(),
        "outputs": outputs,
    }


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
