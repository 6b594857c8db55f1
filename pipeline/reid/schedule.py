"""Which detections to embed: re-id only where it pays.

Embedding is the most expensive stage on a CPU (several times the detector's cost
with a handful of people per frame), yet most detections continue a track whose
appearance is already known and which no other person is near. A
:class:`EmbeddingScheduler` (one per camera) embeds a detection only when

- it may start a track: it does not clearly continue any track shown in the previous
  frame (births, re-acquisitions after a miss, tracks still tentative);
- it is ambiguous: it overlaps another eligible detection, or overlaps two previous tracks, or
  two detections claim the same track — where identity switches happen and appearance
  decides;
- its track's appearance is stale: the track was last embedded ``refresh_frames``
  frames ago or more, so tracklet embeddings keep being sampled along the track.

``refresh_frames=1`` embeds every eligible detection (the previous behaviour).
:meth:`EmbeddingScheduler.priorities` says which of those reasons applies, so a caller
with a crop budget (:class:`~pipeline.reid.policy.PolicyEmbedder`) can keep births and
ambiguous detections and put stale refreshes off to a later frame. The
scheduler only reads :class:`~pipeline.types.Detections` and the tracker's output
:class:`~pipeline.types.Tracks`; it never touches the tracker.
"""

from __future__ import annotations

import numpy as np

from pipeline.geometry import iou_matrix
from pipeline.types import Detections, Tracks

__all__ = ["AMBIGUOUS", "BIRTH", "REFRESH", "SKIP", "EmbeddingScheduler"]

BIRTH = 0
"""Priority of a detection that starts a track or continues one never embedded."""
AMBIGUOUS = 1
"""Priority of a detection near another person (where identity switches happen)."""
REFRESH = 2
"""Priority of a detection whose track's embedding is merely stale."""
SKIP = 3
"""Not embedded this frame (not eligible, or its track's embedding is fresh)."""


class EmbeddingScheduler:
    """Per-camera choice of the detections worth embedding.

    Args:
        refresh_frames: A track that continues unambiguously is re-embedded when its
            last embedding is this many frames old (1 = every frame).
        continuation_iou: IoU with a track's previous box above which a detection
            clearly continues that track.
        ambiguity_iou: IoU above which another detection, or a second previous track,
            makes a detection ambiguous.

    Raises:
        ValueError: a parameter is out of range.
    """

    def __init__(self, *, refresh_frames: int = 1, continuation_iou: float = 0.5,
                 ambiguity_iou: float = 0.1) -> None:
        if int(refresh_frames) < 1:
            raise ValueError(f"refresh_frames must be >= 1, got {refresh_frames}")
        if not 0.0 < continuation_iou <= 1.0 or not 0.0 <= ambiguity_iou < continuation_iou:
            raise ValueError("need 0 <= ambiguity_iou < continuation_iou <= 1, got "
                             f"{ambiguity_iou} and {continuation_iou}")
        self.refresh_frames = int(refresh_frames)
        self.continuation_iou = float(continuation_iou)
        self.ambiguity_iou = float(ambiguity_iou)
        self._boxes = np.zeros((0, 4), np.float32)  # previous frame's track boxes
        self._ids = np.zeros((0,), np.int64)
        self._age: dict[int, int] = {}  # track id -> frames since its last embedding
        self._embedded: set[int] = set()  # shown tracks embedded at least once

    def reset(self) -> None:
        """Forget all tracks (e.g. after a camera reconnects)."""
        self._boxes = np.zeros((0, 4), np.float32)
        self._ids = np.zeros((0,), np.int64)
        self._age.clear()
        self._embedded.clear()

    def select(self, detections: Detections, eligible: np.ndarray) -> np.ndarray:
        """Boolean mask of the detections to embed this frame.

        Args:
            detections: This frame's detections.
            eligible: (N,) bool, detections good enough to embed at all (score, size).

        Returns:
            (N,) bool, a subset of ``eligible``.
        """
        return self.priorities(detections, eligible)[0] < SKIP

    def priorities(self, detections: Detections,
                   eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Why each detection would be embedded this frame, and how stale its track is.

        Args:
            detections: This frame's detections.
            eligible: (N,) bool, detections good enough to embed at all (score, size).

        Returns:
            ``(priority, age)``: (N,) int, one of ``BIRTH``, ``AMBIGUOUS``, ``REFRESH``
            (embed, most urgent first) or ``SKIP``; and (N,) int, frames since the
            continued track's last embedding (0 for births), to order refreshes.
        """
        eligible = np.asarray(eligible, bool).reshape(-1)
        n = len(eligible)
        priority = np.full(n, SKIP, np.int64)
        age = np.zeros(n, np.int64)
        if not eligible.any():
            return priority, age
        if len(self._ids) == 0:
            priority[eligible] = BIRTH
            return priority, age
        boxes = detections.xyxy
        to_tracks = iou_matrix(boxes, self._boxes)  # (N, T)
        order = np.sort(to_tracks, axis=1)
        best = np.argmax(to_tracks, axis=1)
        best_iou = order[:, -1]
        second_iou = order[:, -2] if to_tracks.shape[1] > 1 else np.zeros(len(boxes))
        among = iou_matrix(boxes, boxes)
        np.fill_diagonal(among, 0.0)
        among[:, ~eligible] = 0.0  # low-score boxes (duplicates, parts) do not count
        crowded = among.max(axis=1, initial=0.0) > self.ambiguity_iou
        continues = (best_iou >= self.continuation_iou) & (second_iou <= self.ambiguity_iou)
        claimed = np.bincount(best[continues], minlength=len(self._ids))
        ids = self._ids[best].tolist()
        known = np.array([t in self._embedded for t in ids], bool)
        age = np.array([self._age.get(t, self.refresh_frames) + 1 for t in ids], np.int64)
        clear = continues & ~crowded & (claimed[best] == 1)
        priority[:] = np.where(~(continues & known), BIRTH,
                               np.where(~clear, AMBIGUOUS,
                                        np.where(age < self.refresh_frames, SKIP, REFRESH)))
        if self.refresh_frames == 1:  # every eligible detection, every frame
            priority[(priority == SKIP)] = REFRESH
        priority[~eligible] = SKIP
        age[priority == BIRTH] = 0
        return priority, age

    def observe(self, tracks: Tracks) -> None:
        """Record the tracker's output for this frame (call after every update).

        A track counts as embedded this frame when its matched detection carries a
        non-zero embedding; tracks not shown this frame are forgotten, so a
        re-appearing track is embedded again.
        """
        embedded = (np.any(tracks.embedding != 0, axis=1) if tracks.embedding.shape[1]
                    else np.zeros(len(tracks), bool))
        ages = {}
        for tid, emb in zip(tracks.track_id.tolist(), embedded.tolist(), strict=True):
            ages[tid] = 0 if emb else self._age.get(tid, self.refresh_frames) + 1
            if emb:
                self._embedded.add(tid)
        self._age = ages
        self._embedded &= ages.keys()
        self._ids = tracks.track_id.copy()
        self._boxes = tracks.xyxy.copy()
