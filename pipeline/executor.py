"""Where the cameras' per-frame work runs (the executor seam).

:class:`InProcessCameras` is the camera worker: for one tick of frames (one per
camera) it detects all cameras in one call, embeds the chosen crops of all cameras in
shared batches, then runs each camera's tracker and tracklet builder. It hands back
each frame's tracks and, when asked, the tracklet events association needs; its
``state()`` / ``restore()`` carry everything between ticks, so a worker can go on
elsewhere. Both executors use it as is:

* :func:`in_process` (default): one worker for all cameras in this process;
* ``pipeline.ray_executor.on_ray``: one worker per Ray actor, inside
  ``pipeline.ray_worker.CameraWorker``, behind ``RayCameras`` in this process.

An executor is ``ExecutorContext -> Placement``; the loop sees only the
:class:`Cameras` interface, the sources and the ticks of the ``Placement``. Neither
executor reads the run config beyond what :class:`ExecutorContext` holds: the camera
worker itself comes from ``ExecutorContext.make_cameras`` (built by the assembly).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from pipeline.association import Association
from pipeline.config import CameraConfig, RunConfig, RunOptions
from pipeline.export.crops import BestCrops
from pipeline.geometry import clip_xyxy
from pipeline.reid.policy import PolicyEmbedder
from pipeline.runtime import StageTimer
from pipeline.tracking import Tracker
from pipeline.tracking.camera_motion import CameraMotion
from pipeline.types import Detections, Frame, FrameInfo, TrackKey, Tracklet, Tracks

__all__ = ["Cameras", "ExecutorContext", "InProcessCameras", "MakeCameras", "Placement",
           "in_process", "open_cameras", "read_order", "stream_options_for"]

logger = logging.getLogger(__name__)


class InProcessCameras:
    """The camera worker: detect, embed, track and build tracklets for its cameras.

    ``open`` its sources, ``process`` ticks, ``events`` / ``finish`` for association,
    ``state`` / ``restore`` to go on elsewhere, ``close``. The in-process executor runs
    one for all cameras; each Ray actor one for its cameras.

    Args:
        detector: Batched person detector (``detect(images) -> list[Detections]``).
        embedding: Chooses and embeds crops; None runs motion only.
        trackers: Per camera, a tracker (``pipeline.tracking.Tracker``).
        builders: Per camera, a ``TrackletBuilder``.
        timer: Accumulates the time of each stage.
        outage_reset_s: A camera silent this long has its tracks ended when it comes
            back (live cameras); None never does.
        crops: Keeps each track's best view as a small crop (``BestCrops``, for the run
            store's review page); None keeps none. Runs here because only this side
            has the pixels; what leaves is a small crop when a track's view improves.
        motions: Per camera, a ``CameraMotion`` estimator whose frame-to-frame warp
            the camera's tracker compensates before each update; cameras without one
            (or ``motion: off``) are taken as still.
        detect_every: The detector sees every N-th frame each camera delivers (its 1st,
            N+1-th, ...); on the others the tracker predicts (``Tracker.coast``) and
            nothing is embedded. Their rows wait for the camera's next detected frame:
            a track matched on both sides gets the box interpolated between its two
            detections, the others keep the predicted box (rows come out up to N-1
            frames late; :meth:`drain` hands out what still waits at the end).
    """

    def __init__(self, *, detector: Any, embedding: PolicyEmbedder | None,
                 trackers: Mapping[str, Tracker], builders: Mapping[str, Any], timer: StageTimer,
                 outage_reset_s: float | None = None, crops: BestCrops | None = None,
                 motions: Mapping[str, CameraMotion] | None = None,
                 detect_every: int = 1) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.detector = detector
        self.embedding = embedding
        self.trackers = dict(trackers)
        self.builders = dict(builders)
        self._rank = {cid: i for i, cid in enumerate(self.builders)}  # camera order
        self.timer = timer
        self.outage_reset_s = outage_reset_s
        self.crops = crops
        self.motions = dict(motions or {})
        self.detect_every = int(detect_every)
        self._delivered: dict[str, int] = {}  # frames each camera has delivered
        # Per camera: predicted frames waiting for the next detection, and the index and
        # boxes (by track id) of the last detected frame.
        self._held: dict[str, list[tuple[HeldFrame, Tracks]]] = {}
        self._anchor: dict[str, tuple[int, dict[int, np.ndarray]]] = {}
        self._last_seen: dict[str, float] = {}
        self._ended: list[Tracklet] = []  # tracklets ended by an outage, not yet handed on
        self.sources: list[Any] = []

    def open(self, cameras: Sequence[CameraConfig], *, live: bool, epoch_s: float | None,
             stream_overrides: Mapping[str, Any] | None = None,
             duration_s: float | None = None, stack: ExitStack | None = None) -> list[Any]:
        """Open these cameras' sources (:func:`open_cameras`); :meth:`close` closes them
        (or ``stack``, when given)."""
        self.sources = open_cameras(cameras, live=live, epoch_s=epoch_s,
                                    stream_overrides=stream_overrides, duration_s=duration_s,
                                    stack=stack)
        for source in self.sources:  # durations in seconds become frames at each rate
            cid, fps = source.camera_id, source.fps
            self.trackers[cid].set_fps(fps)
            self.builders[cid].set_fps(fps)
            if self.embedding is not None:
                self.embedding.set_fps(cid, fps)
            if cid in self.motions:
                self.motions[cid].set_fps(fps)
        return self.sources

    def close(self) -> None:
        """Close the sources :meth:`open` opened."""
        for source in self.sources:
            source.close()

    def process(self, tick: list[Frame]) -> list[tuple[Frame, Tracks, dict[int, np.ndarray]]]:
        """Detect, embed and track one tick.

        Returns:
            Per frame ``(frame, tracks, crops)``; ``crops`` maps the track ids whose best
            view improved to a small BGR crop (empty without ``crops``). Earlier frames
            released by this tick's detections come first, then this tick's frames, each
            in camera order (the order the Ray executor writes too).
        """
        if not tick:
            return []
        results: list[tuple[Any, Tracks, dict[int, np.ndarray]]] = []
        current: list[tuple[Any, Tracks, dict[int, np.ndarray]]] = []
        if self.outage_reset_s is not None:
            results += self._restart_after_gaps(tick)
        released: list[tuple[Any, Tracks, dict[int, np.ndarray]]] = []
        detections = self._detect(tick)
        for frame, dets in zip(tick, detections, strict=True):
            cid = frame.camera_id
            boxes = dets.xyxy if dets is not None else np.zeros((0, 4), np.float32)
            if cid in self.motions:
                with self.timer("motion"):
                    warp = self.motions[cid](frame.image_bgr, boxes)
                if warp is not None:
                    self.trackers[cid].compensate(warp)
            with self.timer("track"):
                tracker = self.trackers[cid]
                tracks = tracker.update(dets) if dets is not None else tracker.coast()
                tracks = _inside_frame(tracks, frame.size_wh)
                if self.embedding is not None:
                    self.embedding.observe(cid, tracks)
                if dets is None:  # predicted: waits for the next detection
                    self._held.setdefault(cid, []).append((HeldFrame.of(frame), tracks))
                    continue
                if self.detect_every > 1:
                    released += self._release(cid, (frame.index, tracks))
                self.builders[cid].update(frame.index, frame.timestamp_s, tracks, boxes,
                                          frame.size_wh)
            # A predicted box is no view of the person: best crops come from detections.
            crops = {} if self.crops is None else self.crops.update(
                cid, frame.image_bgr, tracks)
            current.append((frame, tracks, crops))
        return results + read_order(released, self._rank) + current

    def drain(self) -> list[tuple[Any, Tracks, dict[int, np.ndarray]]]:
        """The predicted frames still waiting for a detection (``detect_every``), at
        their predicted boxes: call when the cameras end, before :meth:`finish`."""
        return read_order([r for cid in list(self._held) for r in self._release(cid, None)],
                          self._rank)

    def _release(self, cid: str, detected: tuple[int, Tracks] | None
                 ) -> list[tuple[Any, Tracks, dict[int, np.ndarray]]]:
        """Camera ``cid``'s waiting predicted frames, each through its tracklet builder;
        ``detected``: the index and tracks of the detected frame that ends the wait
        (its tracks become the next anchor), None when the wait ends without one."""
        held = self._held.pop(cid, [])
        anchor = self._anchor.pop(cid, None)
        if detected is not None:
            index, tracks = detected
            after = dict(zip(tracks.track_id.tolist(), tracks.xyxy, strict=True))
            self._anchor[cid] = (index, after)
            if anchor is not None:
                held = [(info, _interpolated(t, anchor, (index, after), info.index))
                        for info, t in held]
        out = []
        for info, tracks in held:
            self.builders[cid].update(info.index, info.timestamp_s, tracks,
                                      np.zeros((0, 4), np.float32), info.size_wh)
            out.append((info, tracks, {}))
        return out

    def _detect(self, tick: list[Frame]) -> list[Detections | None]:
        """Detect (and embed) the tick's frames due for the detector
        (``detect_every``); None for the others."""
        due = []
        for f in tick:
            n = self._delivered.get(f.camera_id, 0)
            self._delivered[f.camera_id] = n + 1
            due.append(n % self.detect_every == 0)
        chosen = [f for f, d in zip(tick, due, strict=True) if d]
        found: list[Detections] = []
        if chosen:
            images = [f.image_bgr for f in chosen]
            cids = [f.camera_id for f in chosen]
            with self.timer("detect"):
                found = self.detector.detect(images, camera_ids=cids)
            if self.embedding is not None:
                with self.timer("embed"):
                    found = self.embedding(cids, images, found)
        out: list[Detections | None] = []
        it = iter(found)
        for d in due:
            out.append(next(it) if d else None)
        return out

    def events(self, snapshot_s: float | None) -> tuple[list[Tracklet], list[Tracklet]]:
        """Tracklet events since the last call: ``(open snapshots, finished)``.

        Args:
            snapshot_s: Snapshot open tracklets seen for at least this many seconds;
                None = no snapshots.
        """
        finished = self._ended + [t for b in self.builders.values() for t in b.finished()]
        self._ended = []
        if self.crops is not None:  # best views of ended tracks were handed on already
            for cid, builder in self.builders.items():
                self.crops.retain(cid, builder.open_track_ids)
        snapshots = [] if snapshot_s is None else [
            t for b in self.builders.values() for t in b.snapshots(min_s=snapshot_s)]
        return snapshots, finished

    def finish(self) -> tuple[list[Tracklet], list[TrackKey]]:
        """End of the run: ``(every tracklet not handed on yet, short tracks)``.

        Short tracks are those below the builders' ``min_length_s``, in camera order.
        """
        finished = self._ended + [t for b in self.builders.values() for t in b.finish()]
        self._ended = []
        short = [(cid, tid) for cid, b in self.builders.items() for tid in b.short_track_ids]
        return finished, short

    def state(self) -> dict[str, Any]:
        """Everything that carries over between ticks (picklable): the trackers, the
        tracklet builders, the outage clock, tracklets ended but not handed on, the
        embedding schedules and counters, the camera-motion estimators (with their last
        frame, small and grey). A worker restarted elsewhere goes on from it
        (:meth:`restore`)."""
        return {"trackers": self.trackers, "builders": self.builders, "motions": self.motions,
                "delivered": self._delivered, "last_seen": self._last_seen,
                "ended": self._ended, "held": self._held, "anchor": self._anchor,
                "embedding": None if self.embedding is None else self.embedding.state()}

    def restore(self, state: dict[str, Any], *, keep_held: bool = True) -> None:
        """Go on from :meth:`state` (of a worker with the same cameras and models);
        ``keep_held=False`` forgets the rows held back for interpolation."""
        self.trackers, self.builders = state["trackers"], state["builders"]
        self.motions = state["motions"]
        self._delivered = state["delivered"]
        self._last_seen, self._ended = state["last_seen"], state["ended"]
        self._held = state["held"] if keep_held else {}
        self._anchor = state["anchor"]
        if self.embedding is not None and state["embedding"] is not None:
            self.embedding.restore(state["embedding"])

    def camera_fields(self) -> dict[str, dict[str, Any]]:
        """Per camera, the summary fields of its tracking: the tracker's frame counts and
        score thresholds in use (``describe``), and camera-motion compensation."""
        fields: dict[str, dict[str, Any]] = {}
        for cid, tracker in self.trackers.items():
            describe = getattr(tracker, "describe", None)
            fields[cid] = {"tracker": describe()} if describe is not None else {}
            motion = self.motions.get(cid)
            fields[cid]["motion"] = {"mode": "off"} if motion is None else {
                "mode": motion.mode, "estimates": motion.estimates,
                "compensated_frames": motion.moving_frames}
        return fields

    def describe(self) -> dict[str, Any]:
        """The summary's ``executor`` section."""
        return {"name": "inprocess"}

    def _restart_after_gaps(self, tick: list[Frame]
                            ) -> list[tuple[Any, Tracks, dict[int, np.ndarray]]]:
        """End the tracks of cameras that come back after an outage; returns the rows
        of their predicted frames that were still waiting.

        The tracker's lost-track buffer counts frames, not seconds: after a long outage it
        would happily continue an old track with whoever stands there now. Its tracks
        end without resetting its id counter (ids stay unique); the embedding schedule
        of the camera starts afresh too.
        """
        released = []
        for frame in tick:
            cid = frame.camera_id
            previous = self._last_seen.get(cid)
            self._last_seen[cid] = frame.timestamp_s
            if previous is None or frame.timestamp_s - previous < self.outage_reset_s:
                continue
            logger.info("camera %s: %.1f s without frames; ending its open tracks",
                        cid, frame.timestamp_s - previous)
            released += self._release(cid, None)
            self.trackers[cid].end_tracks()
            if cid in self.motions:
                self.motions[cid].reset()
            self._ended += self.builders[cid].finish()
            if self.embedding is not None:
                self.embedding.reset(cid)
        return released


@dataclass(frozen=True)
class HeldFrame:
    """Where a predicted frame's rows belong (a ``FrameInfo``), kept without its image
    while they wait for the camera's next detection."""

    camera_id: str
    index: int
    timestamp_s: float
    size_wh: tuple[int, int]

    @classmethod
    def of(cls, frame: Frame) -> HeldFrame:
        return cls(frame.camera_id, frame.index, frame.timestamp_s, frame.size_wh)


def read_order(rows: list[tuple[Any, Tracks, Any]], rank: Mapping[str, int]
               ) -> list[tuple[Any, Tracks, Any]]:
    """Waiting frames of several cameras (each camera's in order) in the order they were
    read: every camera's first (in ``rank`` order), then every camera's second, ... So
    a run writes the same rows in the same order in process and on Ray."""
    position: Counter[str] = Counter()
    keyed = []
    for row in rows:
        cid = row[0].camera_id
        keyed.append((position[cid], rank.get(cid, len(rank)), len(keyed)))
        position[cid] += 1
    return [rows[k[2]] for k in sorted(keyed)]


def _interpolated(tracks: Tracks, before: tuple[int, dict[int, np.ndarray]],
                  after: tuple[int, dict[int, np.ndarray]], index: int) -> Tracks:
    """``tracks`` of predicted frame ``index`` with the box of every track found in
    both detected frames (``(index, {track id: xyxy})``) interpolated between them."""
    (i0, boxes0), (i1, boxes1) = before, after
    if i1 <= i0 or len(tracks) == 0:
        return tracks
    w = (index - i0) / (i1 - i0)
    xyxy = tracks.xyxy.copy()
    for row, tid in enumerate(tracks.track_id.tolist()):
        if tid in boxes0 and tid in boxes1:
            xyxy[row] = (1.0 - w) * boxes0[tid] + w * boxes1[tid]
    return replace(tracks, xyxy=xyxy)


def _inside_frame(tracks: Tracks, size_wh: tuple[int, int]) -> Tracks:
    """Tracks with their boxes clipped to the frame: a filtered box (the tracker's
    Kalman estimate) can reach past the edge that clipped its detection."""
    if len(tracks) == 0:
        return tracks
    return replace(tracks, xyxy=clip_xyxy(tracks.xyxy, *size_wh))


class Cameras(Protocol):
    """What the frame loop needs of the cameras' work, wherever it runs.

    ``embedding``: None without re-id, else an object whose ``stats()`` gives the
    summary's ``reid`` counters.
    """

    embedding: Any

    def process(self, tick: Sequence[Any]) -> list[tuple[FrameInfo, Tracks,
                                                         Mapping[int, np.ndarray]]]:
        """One tick: per camera frame ``(frame record, tracks, crops)``."""
        ...

    def events(self, snapshot_s: float | None) -> tuple[list[Tracklet], list[Tracklet]]:
        """Tracklet events since the last call: ``(open snapshots, finished)``."""
        ...

    def drain(self) -> list[tuple[FrameInfo, Tracks, Mapping[int, np.ndarray]]]:
        """The cameras have ended: rows still held back (predicted frames waiting for
        a detection, ``detector.every``), as ``process`` returns them. Before ``finish``."""
        ...

    def finish(self) -> tuple[list[Tracklet], list[TrackKey]]:
        """End of the run: ``(tracklets not handed on, short tracks)``."""
        ...

    def camera_fields(self) -> dict[str, dict[str, Any]]:
        """Per camera, summary fields of where it ran."""
        ...

    def describe(self) -> dict[str, Any]:
        """The summary's ``executor`` section."""
        ...


MakeCameras = Callable[..., InProcessCameras]
"""``make(camera_ids, *, device, threads, timer, outage_reset_s) -> InProcessCameras``:
the camera worker of those cameras, models loaded (``pipeline.assembly.build_cameras``
bound to the run config; picklable, so a Ray actor builds its own)."""


@dataclass(frozen=True)
class ExecutorContext:
    """What an executor needs to place the cameras' work (see ``assembly.build_run``).

    Attributes:
        config: The run configuration (cameras, executor section, re-id switches).
        options: The run's ``RunOptions``.
        live: Live cameras (wall-clock ticks) or recordings (timestamp ticks).
        association: The run's associator (its schedule decides tracklet events).
        make_cameras: Builds the camera worker of some cameras.
        device: ``cpu`` or ``cuda``.
        threads: Torch threads of this process.
        timer: The run's stage timer.
        stop: Set on SIGINT/SIGTERM.
        stack: Closes what the executor opens.
    """

    config: RunConfig
    options: RunOptions
    live: bool
    association: Association
    make_cameras: MakeCameras
    device: str
    threads: int
    timer: StageTimer
    stop: threading.Event
    stack: ExitStack

    @property
    def outage_reset_s(self) -> float | None:
        """Live cameras: silence after which a camera's tracks end; None for recordings."""
        return self.options.outage_reset_s if self.live else None


@dataclass
class Placement:
    """Where an executor put the cameras' work, as the loop sees it.

    Attributes:
        cameras: The cameras' work (``process``, ``events``, ``finish``).
        sources: The opened sources (or, on Ray, proxies with ``camera_id``, ``fps``,
            ``frame_count``).
        camera_set: Whose ticks feed ``cameras.process`` (``health()``, ``ended``).
        wall_start: ``perf_counter()`` the run's clock starts from (models loaded,
            sources about to open).
    """

    cameras: Cameras
    sources: list[Any]
    camera_set: Any
    wall_start: float


def stream_options_for(camera: Any, epoch_s: float | None,
                       overrides: Mapping[str, Any] | None = None,
                       duration_s: float | None = None) -> dict[str, Any]:
    """``StreamSource`` keyword arguments of one live camera.

    The camera's ``stream`` mapping from the config, then the run's ``overrides``
    (``RunOptions.stream_options``, for every camera), and the run's clock origin
    ``epoch_s`` (shared by all cameras, so their timestamps align). With a run
    ``duration_s``, the start-up wait for a first frame (``wait_first_s``, counted from
    ``epoch_s``) ends with the run at the latest.
    """
    options = {"epoch_s": epoch_s, **dict(getattr(camera, "stream", None) or {}),
               **dict(overrides or {})}
    if duration_s is not None:
        from pipeline.sources import first_frame_wait_s

        options["wait_first_s"] = min(first_frame_wait_s(options), float(duration_s))
    return options


def open_cameras(cameras: Sequence[CameraConfig], *, live: bool, epoch_s: float | None,
                 stream_overrides: Mapping[str, Any] | None = None,
                 duration_s: float | None = None, stack: ExitStack | None = None) -> list[Any]:
    """Open the cameras' sources, in order; live ones with the run's clock origin
    ``epoch_s`` (``time.monotonic()`` of this process) and their stream options. With
    ``stack``, each source is entered as it opens (one that fails closes the others)."""
    from pipeline.sources import open_source

    sources = []
    for c in cameras:
        source = open_source(camera_id=c.id, uri=c.source, fps=c.fps, stream_options=(
            stream_options_for(c, epoch_s, stream_overrides, duration_s) if live else None))
        sources.append(stack.enter_context(source) if stack is not None else source)
    return sources


def in_process(ctx: ExecutorContext) -> Placement:
    """The default executor: every camera's work in this process, one worker."""
    from pipeline.sources import CameraSet

    config, options = ctx.config, ctx.options
    cameras = ctx.make_cameras([c.id for c in config.cameras], device=ctx.device,
                               threads=ctx.threads, timer=ctx.timer,
                               outage_reset_s=ctx.outage_reset_s)
    wall_start = time.perf_counter()
    sources = cameras.open(config.cameras, live=ctx.live, epoch_s=time.monotonic(),
                           stream_overrides=options.stream_options,
                           duration_s=options.duration_s, stack=ctx.stack)
    camera_set = CameraSet(sources=sources, max_frames=options.max_frames, live=ctx.live,
                           duration_s=options.duration_s, stop=ctx.stop, yield_empty=True)
    return Placement(cameras=cameras, sources=sources, camera_set=camera_set,
                     wall_start=wall_start)
