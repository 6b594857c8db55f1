"""The Ray actor of ``pipeline.ray_executor``: a group of cameras, end to end.

A :class:`CameraWorker` opens its cameras' sources with the in-process executor's
``open_cameras`` (frames are decoded where they are used and never cross the network),
builds its camera worker with the run's ``make_cameras`` (the same
:class:`~pipeline.executor.InProcessCameras` a single-process run uses), runs its own
tick loop and returns :class:`Batch` es of compact :class:`~pipeline.types.CameraUpdate`
records. It hands on tracklet events when its copy of the associator's
:class:`~pipeline.association.Schedule` says so. Every ``checkpoint_frames`` ticks a
batch carries a checkpoint (``InProcessCameras.state()`` and the schedule, pickled) so
a restarted actor can continue where the driver saw it last. Nothing here imports Ray
at module level.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.association import Schedule
from pipeline.config import CameraConfig
from pipeline.executor import MakeCameras
from pipeline.runtime import StageTimer
from pipeline.types import CameraUpdate, Frame, Tracklet, Tracks

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
        cameras: The cameras it hosts (config order).
        device, threads: Model device and CPU threads inside the actor.
        live: Live cameras (wall-clock ticks) or recordings.
        outage_reset_s: Live cameras: end a camera's tracks after this long silent.
        snapshot_s: The association's ``snapshot_s`` (None: no events during
            the run, everything at the end, as offline association wants).
        schedule: A copy of the associator's schedule (when events are handed on).
        batch_frames: Ticks per returned batch.
        batch_s: Live cameras: longest wall-clock wait for one batch.
        checkpoint_frames: Ticks between checkpoints.
        stream_overrides: The run's ``StreamSource`` options for every live camera
            (``RunOptions.stream_options``).
        duration_s: The run's duration (caps a live camera's first-frame wait).
        crash_at: Fault injection for tests (``RunOptions.inject_worker_crash``):
            ``(camera, frame index)`` at which the first incarnation of the actor exits
            its process.
    """

    cameras: tuple[CameraConfig, ...]
    device: str
    threads: int
    live: bool
    outage_reset_s: float | None
    snapshot_s: float | None
    schedule: Schedule
    batch_frames: int
    batch_s: float
    checkpoint_frames: int
    stream_overrides: Mapping[str, Any] | None = None
    duration_s: float | None = None
    crash_at: tuple[str, int] | None = None

    @property
    def camera_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.cameras)


@dataclass
class Batch:
    """One call's results: updates in tick order, maybe a checkpoint, whether done."""

    updates: list[CameraUpdate]
    checkpoint: bytes | None
    next_index: dict[str, int]
    done: bool
    health: dict[str, dict[str, Any]]
    limited: list[str] = field(default_factory=list)


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
        make_cameras: Builds the camera worker (``ExecutorContext.make_cameras``; the
            paths it loads must exist on the actor's node).
        plan: Its cameras and settings.
    """

    def __init__(self, make_cameras: MakeCameras, plan: WorkerPlan) -> None:
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
        self.timer = StageTimer()
        self.cams = make_cameras(list(plan.camera_ids), device=plan.device,
                                 threads=plan.threads, timer=self.timer,
                                 outage_reset_s=plan.outage_reset_s)
        self.schedule = replace(plan.schedule)
        self.sources: dict[str, Any] = {}
        if not plan.live:  # live cameras open with the run's clock (``resume``)
            self._open(None)
        self.ticks: Iterator[list[Frame]] = iter(())
        self.windows: list[_Window] = []
        self.resumed = False  # resume() is every incarnation's first loop call

    def _open(self, wall_epoch_s: float | None) -> None:
        # The run's clock origin, from the driver's wall clock (nodes' monotonic clocks
        # differ; their wall clocks agree to NTP precision).
        epoch = None if wall_epoch_s is None else \
            time.monotonic() - (time.time() - wall_epoch_s)
        plan = self.plan
        sources = self.cams.open(plan.cameras, live=plan.live, epoch_s=epoch,
                                 stream_overrides=plan.stream_overrides,
                                 duration_s=plan.duration_s)
        self.sources = {s.camera_id: s for s in sources}

    def _start(self, next_index: Mapping[str, int], until_s: float | None,
               stop_at: Mapping[str, int] | None) -> None:
        from pipeline.sources import CameraSet, synchronise

        self.next_index = dict(next_index)
        self.offset = dict(next_index) if self.plan.live else dict.fromkeys(next_index, 0)
        self.schedule = replace(self.plan.schedule)
        self.since_checkpoint = 0
        # Tracklet events of ticks that produced no update (every frame predicted, its
        # rows held back): they ride on the next update.
        self._carry: tuple[list[Tracklet] | None, list[Tracklet]] = (None, [])
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
        self._start(next_index, until_s, stop_at)
        if checkpoint is not None:
            state = pickle.loads(checkpoint)
            # Live: rows held back at the checkpoint were handed on before the crash, and
            # the frame numbers go on from there; recordings replay and deduplicate.
            self.cams.restore(state["cameras"], keep_held=not self.plan.live)
            self.schedule = state["schedule"]
            self._carry = state["carry"]
        self.resumed = True

    def _checkpoint(self) -> bytes:
        return pickle.dumps({"cameras": self.cams.state(), "schedule": self.schedule,
                             "carry": self._carry}, protocol=pickle.HIGHEST_PROTOCOL)

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
        for frame in tick:  # processed (its rows may be held back): resume after it
            self.next_index[frame.camera_id] = frame.index + self.offset[frame.camera_id] + 1
        snapshots, finished = None, []
        if self.schedule.due(max(f.timestamp_s for f in tick)):
            snapshots, finished = self.cams.events(self.plan.snapshot_s)
        return self._updates(results, snapshots, finished)

    def _updates(self, results: list[tuple[Any, Tracks, Any]],
                 snapshots: list[Tracklet] | None, finished: list[Tracklet]
                 ) -> list[CameraUpdate]:
        """The camera worker's per-frame results as updates for the driver; the
        tracklet events ride on the first (kept for the next update when there is none)."""
        carried_snapshots, carried = self._carry
        snapshots = snapshots if snapshots is not None else carried_snapshots
        finished = carried + finished
        if not results:
            self._carry = (snapshots, finished)
            return []
        self._carry = (None, [])
        updates = []
        for i, (frame, tracks, crops) in enumerate(results):
            cid = frame.camera_id
            index = frame.index + self.offset[cid]
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
        drained = self._updates(self.cams.drain(), None, [])
        finished, short = self.cams.finish()
        finished = self._carry[1] + finished  # events no update took
        self._carry = (None, [])
        embedding = self.cams.embedding
        fields = self.cams.camera_fields()
        self.cams.close()
        return {"drained": drained, "finished": finished, "short": short,
                "camera_fields": fields,
                "stage_ms": dict(self.timer.totals_ms), "rss_mb": _rss_mb(),
                "reid": None if embedding is None else embedding.counts()}
