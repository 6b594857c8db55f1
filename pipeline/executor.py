"""Where the cameras' per-frame work runs: in this process (the executor seam).

:class:`InProcessCameras` does, for one tick of frames (one per camera): detection of
all cameras in one call, embedding of the chosen crops of all cameras in shared
batches, then per camera the tracker and the tracklet builder. It hands back each
frame's tracks and, when asked, the tracklet events association needs. A Ray actor
per camera is another class with the same three methods
(``pipeline.ray_executor.RayCameras``); the runner, the association and the sinks do
not change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from pipeline.export.crops import BestCrops
from pipeline.geometry import clip_xyxy
from pipeline.reid.policy import PolicyEmbedder
from pipeline.runtime import StageTimer
from pipeline.tracking import Tracker
from pipeline.types import Frame, TrackKey, Tracklet, Tracks

__all__ = ["InProcessCameras"]

logger = logging.getLogger(__name__)


class InProcessCameras:
    """Detect, embed, track and build tracklets for every camera, in this process.

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
    """

    def __init__(self, *, detector: Any, embedding: PolicyEmbedder | None,
                 trackers: Mapping[str, Tracker], builders: Mapping[str, Any], timer: StageTimer,
                 outage_reset_s: float | None = None, crops: BestCrops | None = None) -> None:
        self.detector = detector
        self.embedding = embedding
        self.trackers = dict(trackers)
        self.builders = dict(builders)
        self.timer = timer
        self.outage_reset_s = outage_reset_s
        self.crops = crops
        self._last_seen: dict[str, float] = {}
        self._ended: list[Tracklet] = []  # tracklets ended by an outage, not yet handed on

    def process(self, tick: list[Frame]) -> list[tuple[Frame, Tracks, dict[int, np.ndarray]]]:
        """Detect, embed and track one tick.

        Returns:
            Per frame ``(frame, tracks, crops)``; ``crops`` maps the track ids whose best
            view improved to a small BGR crop (empty without ``crops``).
        """
        if not tick:
            return []
        if self.outage_reset_s is not None:
            self._restart_after_gaps(tick)
        images = [f.image_bgr for f in tick]
        with self.timer("detect"):
            detections = self.detector.detect(images,
                                              camera_ids=[f.camera_id for f in tick])
        if self.embedding is not None:
            with self.timer("embed"):
                detections = self.embedding([f.camera_id for f in tick], images, detections)
        results = []
        for frame, dets in zip(tick, detections, strict=True):
            cid = frame.camera_id
            with self.timer("track"):
                tracks = _inside_frame(self.trackers[cid].update(dets), frame.size_wh)
                if self.embedding is not None:
                    self.embedding.observe(cid, tracks)
                self.builders[cid].update(frame.index, frame.timestamp_s, tracks, dets.xyxy,
                                          frame.size_wh)
            crops = {} if self.crops is None else self.crops.update(cid, frame.image_bgr,
                                                                    tracks)
            results.append((frame, tracks, crops))
        return results

    def events(self, snapshot_frames: int | None) -> tuple[list[Tracklet], list[Tracklet]]:
        """Tracklet events since the last call: ``(open snapshots, finished)``.

        Args:
            snapshot_frames: Snapshot open tracklets with at least this many frames;
                None = no snapshots.
        """
        finished = self._ended + [t for b in self.builders.values() for t in b.finished()]
        self._ended = []
        snapshots = [] if snapshot_frames is None else [
            t for b in self.builders.values() for t in b.snapshots(min_frames=snapshot_frames)]
        return snapshots, finished

    def finish(self) -> tuple[list[Tracklet], list[TrackKey]]:
        """End of the run: ``(every tracklet not handed on yet, short tracks)``.

        Short tracks are those below the builders' ``min_length``, in camera order.
        """
        finished = self._ended + [t for b in self.builders.values() for t in b.finish()]
        self._ended = []
        short = [(cid, tid) for cid, b in self.builders.items() for tid in b.short_track_ids]
        return finished, short

    def camera_fields(self) -> dict[str, dict[str, Any]]:
        """Per camera, extra summary fields of where it ran (none in process)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The summary's ``executor`` section."""
        return {"name": "inprocess"}

    def _restart_after_gaps(self, tick: list[Frame]) -> None:
        """End the tracks of cameras that come back after an outage.

        The tracker's lost-track buffer counts frames, not seconds: after a long outage it
        would happily continue an old track with whoever stands there now. Its tracks
        end without resetting its id counter (ids stay unique); the embedding schedule
        of the camera starts afresh too.
        """
        for frame in tick:
            cid = frame.camera_id
            previous = self._last_seen.get(cid)
            self._last_seen[cid] = frame.timestamp_s
            if previous is None or frame.timestamp_s - previous < self.outage_reset_s:
                continue
            logger.info("camera %s: %.1f s without frames; ending its open tracks",
                        cid, frame.timestamp_s - previous)
            self.trackers[cid].end_tracks()
            self._ended += self.builders[cid].finish()
            if self.embedding is not None:
                self.embedding.reset(cid)


def _inside_frame(tracks: Tracks, size_wh: tuple[int, int]) -> Tracks:
    """Tracks with their boxes clipped to the frame: a filtered box (the tracker's
    Kalman estimate) can reach past the edge that clipped its detection."""
    if len(tracks) == 0:
        return tracks
    return replace(tracks, xyxy=clip_xyxy(tracks.xyxy, *size_wh))
