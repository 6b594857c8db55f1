"""The Ray actor of ``pipeline.ray_executor``: a group of cameras, end to end.

A :class:`CameraWorker` opens its cameras' sources (frames are decoded where they are
used and never cross the network), builds the same
:class:`~pipeline.executor.InProcessCameras` a single-process run uses, runs its own tick
loop and returns :class:`Batch` es of compact :class:`~pipeline.types.CameraUpdate`
records. Every ``checkpoint_frames`` ticks a batch carries a checkpoint (the trackers',
tracklet builders' and embedding schedules' state, pickled) so a restarted actor can
continue where the driver saw it last. Nothing here imports Ray at module level.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.assembly import build_cameras, set_threads
from pipeline.config import RunConfig
from pipeline.runtime import StageTimer
from pipeline.types import CameraUpdate, Frame, Tracks

__all__ = ["Batch", "CameraWorker", "NotResumed", "WORKER_ENV", "WorkerPlan"]

logger = logging.getLogger(__name__)

WORKER_ENV = {"YOLO_OFFLINE": "1", "OPENBLAS_NUM_THREADS": "1",
               "RAY_USAGE_STATS_ENABLED": "0"}


class NotResumed(RuntimeError):
    """A call reached an actor that Ray restarted while it was idle (no call failed):
    the driver must hand it its checkpoint first (``CameraWorker.resume``)."""


@dataclass(frozen=True)
class WorkerPlan:
    """What one actor is told: its cameras and how to run them.

    Attributes:
        camera_ids: The cameras it hosts (config order).
        device, threads: Model device and CPU threads inside the actor.
        live: Live cameras (wall-clock ticks) or recordings.
        outage_reset_s: Live cameras: end a camera's tracks after this long silent.
        snapshot_frames: The association's ``snapshot_frames`` (None: no events during
            the run, everything at the end, as offline association wants).
        every_s: Seconds of run clock between association rounds (None: offline).
        batch_frames: Ticks per returned batch.
        batch_s: Live cameras: longest wall-clock wait for one batch.
        checkpoint_frames: Ticks between checkpoints.
        stream_options: Per camera ``StreamSource`` options (live), without ``epoch_s``.
        crash_at: Fault injection for tests: ``(camera, frame index)`` at which the first
            incarnation of the actor exits its process.
    """

    camera_ids: tuple[str, ...]
    device: str
    threads: int
    live: bool
    outage_reset_s: float | None
    snapshot_frames: int | None
    every_s: float | None
    batch_frames: int
    batch_s: float
    checkpoint_frames: int
    stream_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    crash_at: tuple[str, int] | None = None


@dataclass
class Batch:
    """One call's results: updates in tick order, maybe a checkpoint, whether done."""

    updates: list[CameraUpdate]
    checkpoint: bytes | None
    next_index: dict[str, int]
    done: bool
    health: dict[str, dict[str, Any]]
    limited: list[str] = field(default_factory=list)


_COUNTERS = ("eligible", "embedded", "deferred")  # PolicyEmbedder's summary counters


def _counts(embedding: Any) -> dict[str, int] | None:
    """The embedding policy's counters (restored with a checkpoint, summed at the end)."""
    if embedding is None:
        return None
    return {name: getattr(embedding, name) for name in _COUNTERS if hasattr(embedding, name)}


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


class _Window:
    """A recorded source from frame ``start`` up to timestamp ``until_s`` and frame
    ``last`` (None: no limit)."""

    def __init__(self, source: Any, start: int, until_s: float | None,
                 last: int | None) -> None:
        self.source, self.start, self.until_s, self.last = source, start, until_s, last
        self.camera_id, self.fps = source.camera_id, source.fps
        self.limited = False  # stopped by the limits, not by the end of the source

    @property
    def period_s(self) -> float:
        return self.source.period_s

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.source:
            if (self.until_s is not None and frame.timestamp_s > self.until_s) or \
                    (self.last is not None and frame.index > self.last):
                self.limited = True
                return
            if frame.index >= self.start:
                yield frame


class CameraWorker:
    """A Ray actor hosting a group of cameras: sources, models, trackers, tracklets.

    Args:
        config: The run configuration (paths must exist on the actor's node).
        plan: Its cameras and settings.
    """

    def __init__(self, config: RunConfig, plan: WorkerPlan) -> None:
        for key, value in WORKER_ENV.items():
            os.environ.setdefault(key, value)
        # The driver shows the workers' output: warnings only (model loads log at INFO).
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        import ray


        self.plan = plan
        with warnings.catch_warnings():  # deprecated in Ray 2.5x, without a replacement
            warnings.simplefilter("ignore")
            self.reconstructed = bool(
                ray.get_runtime_context().was_current_actor_reconstructed)
        threads = set_threads(plan.threads)
        self.timer = StageTimer()
        self.cams = build_cameras(config, list(plan.camera_ids), device=plan.device,
                                  threads=threads, timer=self.timer,
                                  outage_reset_s=plan.outage_reset_s)
        self.cameras = {c.id: c for c in config.cameras if c.id in plan.camera_ids}
        self.sources: dict[str, Any] = {}
        if not plan.live:  # live cameras open with the run's clock (``resume``)
            self._open(None)
        self.ticks: Iterator[list[Frame]] = iter(())
        self.windows: list[_Window] = []
        self.resumed = False  # resume() is every incarnation's first loop call

    def _open(self, wall_epoch_s: float | None) -> None:
        from pipeline.sources import open_source

        # The run's clock origin, from the driver's wall clock (nodes' monotonic clocks
        # differ; their wall clocks agree to NTP precision).
        epoch = None if wall_epoch_s is None else \
            time.monotonic() - (time.time() - wall_epoch_s)
        self.sources = {cid: open_source(
            camera_id=cid, uri=c.source, fps=c.fps,
            stream_options={**self.plan.stream_options.get(cid, {}), "epoch_s": epoch}
            if self.plan.live else None) for cid, c in self.cameras.items()}

    def _start(self, next_index: Mapping[str, int], until_s: float | None,
               stop_at: Mapping[str, int] | None) -> None:
        from pipeline.sources import CameraSet, synchronise

        self.next_index = dict(next_index)
        self.offset = dict(next_index) if self.plan.live else dict.fromkeys(next_index, 0)
        self.last_due_s = float("-inf")
        self.since_checkpoint = 0
        if self.plan.live:
            self.camera_set = CameraSet(sources=list(self.sources.values()), live=True,
                                        yield_empty=True)
            self.ticks = iter(self.camera_set)
        else:
            self.windows = [_Window(self.sources[c], self.next_index[c], until_s,
                                    None if stop_at is None else stop_at.get(c))
                            for c in self.plan.camera_ids]
            self.ticks = synchronise(self.windows)

    def info(self) -> dict[str, Any]:
        """Per camera fps, frame count and size; the process and node."""
        import ray

        import pipeline

        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(),
                "package": str(Path(pipeline.__file__).resolve().parent),
                "rss_mb": _rss_mb(), "reconstructed": self.reconstructed,
                "cameras": {cid: {"fps": s.fps, "frame_count": s.frame_count}
                            for cid, s in self.sources.items()}}  # live: after resume

    def resume(self, checkpoint: bytes | None, next_index: Mapping[str, int],
               until_s: float | None = None, stop_at: Mapping[str, int] | None = None,
               wall_epoch_s: float | None = None) -> None:
        """Start, or continue after a restart, from a checkpoint (None: the start).

        Args:
            checkpoint: State of the trackers and tracklet builders (``_checkpoint``).
            next_index: Per camera, the frame to continue from (recorded: earlier frames
                are decoded and skipped; live: where the frame numbering continues).
            until_s: Recordings: frames later than this are not read (the tick limit).
            stop_at: Recordings: per camera, the last frame to process (replaying up to
                what the driver had received, when the run is already finishing).
            wall_epoch_s: Live cameras: ``time.time()`` of the run start; the streams
                open now (a restarted actor reconnects here).
        """
        if self.plan.live and not self.sources:
            self._open(wall_epoch_s)
        if checkpoint is not None:
            state = pickle.loads(checkpoint)
            self.cams.trackers, self.cams.builders = state["trackers"], state["builders"]
            self.cams._last_seen, self.cams._ended = state["last_seen"], state["ended"]
            if self.cams.embedding is not None:
                self.cams.embedding.schedulers = state["schedulers"]
                for name, value in state["counts"].items():
                    setattr(self.cams.embedding, name, value)
        self._start(next_index, until_s, stop_at)
        self.resumed = True
        if checkpoint is not None:
            self.last_due_s = state["last_due_s"]

    def _checkpoint(self) -> bytes:
        embedding = self.cams.embedding
        return pickle.dumps({
            "trackers": self.cams.trackers, "builders": self.cams.builders,
            "last_seen": self.cams._last_seen, "ended": self.cams._ended,
            "schedulers": embedding.schedulers if embedding is not None else None,
            "counts": _counts(embedding),
            "last_due_s": self.last_due_s}, protocol=pickle.HIGHEST_PROTOCOL)

    def next_batch(self) -> Batch:
        """Process up to ``batch_frames`` ticks (live: or ``batch_s`` seconds)."""
        if not self.resumed:
            raise NotResumed("restarted actor not resumed")
        updates: list[CameraUpdate] = []
        done, ticks, started = False, 0, time.monotonic()
        while ticks < self.plan.batch_frames:
            if self.plan.live and updates and time.monotonic() - started >= self.plan.batch_s:
                break
            tick = next(self.ticks, None)
            if tick is None:
                done = True
                break
            if not tick:
                if time.monotonic() - started >= self.plan.batch_s:
                    break
                continue
            updates += self._process(tick)
            ticks += 1
        self.since_checkpoint += ticks
        checkpoint = None
        if self.since_checkpoint >= self.plan.checkpoint_frames and not done:
            checkpoint, self.since_checkpoint = self._checkpoint(), 0
        health = {s.camera_id: s.health() for s in self.sources.values()
                  if hasattr(s, "health")}
        return Batch(updates=updates, checkpoint=checkpoint, next_index=dict(self.next_index),
                     done=done, health=health,
                     limited=[w.camera_id for w in self.windows if w.limited])

    def _process(self, tick: list[Frame]) -> list[CameraUpdate]:
        if self.plan.crash_at is not None and not self.reconstructed:
            for frame in tick:
                if (frame.camera_id, frame.index) == self.plan.crash_at:
                    os._exit(1)  # a real crash of the worker process (tests)
        results = self.cams.process(tick)
        now_s = max(f.timestamp_s for f in tick)
        snapshots, finished = None, []
        if self.plan.every_s is not None and now_s - self.last_due_s >= self.plan.every_s:
            self.last_due_s = now_s  # the associator's schedule (OnlineAssociator.due)
            snapshots, finished = self.cams.events(self.plan.snapshot_frames)
        updates = []
        for i, (frame, tracks, crops) in enumerate(results):
            cid = frame.camera_id
            index = frame.index + self.offset[cid]
            self.next_index[cid] = index + 1
            updates.append(CameraUpdate(
                camera_id=cid, index=index, timestamp_s=frame.timestamp_s,
                size_wh=frame.size_wh,
                tracks=Tracks(track_id=tracks.track_id, xyxy=tracks.xyxy, score=tracks.score,
                              det_index=tracks.det_index),
                snapshots=snapshots if i == 0 else None, finished=finished if i == 0 else [],
                crops=crops))
        return updates

    def finish(self) -> dict[str, Any]:
        """End of the run: remaining tracklets, short tracks, counters; closes sources."""
        if not self.resumed:
            raise NotResumed("restarted actor not resumed")
        finished, short = self.cams.finish()
        embedding = self.cams.embedding
        for source in self.sources.values():
            source.close()
        return {"finished": finished, "short": short,
                "stage_ms": dict(self.timer.totals_ms), "rss_mb": _rss_mb(),
                "reid": _counts(embedding)}
