"""Turn per-frame ``Tracks`` into ``Tracklet`` summaries for cross-camera matching.

Each track keeps its full box history (cheap) but at most ``max_embeddings``
appearance vectors: the best observations by a quality score, kept in a small
min-heap per track so the cost per update is O(log max_embeddings) per track. The
pooled tracklet embedding is the quality-weighted mean of the kept vectors,
L2-normalised.
"""

from __future__ import annotations

import heapq
import itertools
import logging

import numpy as np

from pipeline.geometry import box_area, clip_xyxy, ioa_matrix, iou_matrix
from pipeline.types import DEFAULT_FPS, Tracklet, Tracks, seconds_to_frames

__all__ = ["quality_scores", "TrackletBuilder"]

logger = logging.getLogger(__name__)


def quality_scores(
    xyxy: np.ndarray,
    scores: np.ndarray,
    all_boxes: np.ndarray,
    image_wh: tuple[int, int],
    *,
    self_index: np.ndarray | None = None,
    ref_height: float = 128.0,
    border_margin: float = 2.0,
    border_penalty: float = 0.5,
) -> np.ndarray:
    """How useful each box's crop is for re-identification, in [0, 1].

    The product of four factors, each in [0, 1]:

    * detection score (clipped);
    * size: ``height / ref_height`` capped at 1 (re-id nets see ~256x128 inputs, so
      a 40 px tall person is mostly upsampling blur);
    * occlusion: ``1 - max IoA`` of the box covered by any *other* box of the frame;
    * truncation: the fraction of the box inside the image, times ``border_penalty``
      when the box touches the image border (detectors clip boxes there, so a
      touching box is probably a cut-off person).

    Args:
        xyxy: (N, 4) boxes to score, pixels.
        scores: (N,) detection scores.
        all_boxes: (K, 4) every box of the frame (the occluders), pixels.
        image_wh: Image (width, height) in pixels.
        self_index: (N,) row of each box in ``all_boxes``, excluded from its own
            occluders; when None, near-identical boxes (IoU > 0.99) are excluded.
        ref_height: Height in pixels at which the size factor reaches 1.
        border_margin: Distance in pixels to the border that counts as touching.
        border_penalty: Factor applied to boxes touching the border.

    Returns:
        float32 (N,) quality.
    """
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    n = boxes.shape[0]
    if n == 0:
        return np.zeros((0,), np.float32)
    others = np.asarray(all_boxes, dtype=np.float32).reshape(-1, 4)
    score = np.clip(np.asarray(scores, dtype=np.float32).reshape(n), 0.0, 1.0)
    height = boxes[:, 3] - boxes[:, 1]
    size = np.clip(height / ref_height, 0.0, 1.0)

    occlusion = np.zeros(n, np.float32)
    if others.shape[0]:
        ioa = ioa_matrix(boxes, others)
        if self_index is not None:
            ioa[np.arange(n), np.asarray(self_index, dtype=np.int64)] = 0.0
        else:
            ioa[iou_matrix(boxes, others) > 0.99] = 0.0
        occlusion = ioa.max(axis=1)

    width, img_h = image_wh
    area = np.maximum(box_area(boxes), 1e-9)
    inside = box_area(clip_xyxy(boxes, width, img_h)) / area
    touches = (
        (boxes[:, 0] <= border_margin)
        | (boxes[:, 1] <= border_margin)
        | (boxes[:, 2] >= width - border_margin)
        | (boxes[:, 3] >= img_h - border_margin)
    )
    truncation = np.clip(inside, 0.0, 1.0) * np.where(touches, border_penalty, 1.0)
    return (score * size * (1.0 - occlusion) * truncation).astype(np.float32)


class _Accumulator:
    __slots__ = ("frames", "times", "boxes", "heap", "last_time")

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.times: list[float] = []
        self.boxes: list[np.ndarray] = []
        self.heap: list[tuple[float, int, np.ndarray]] = []  # (quality, seq, vector)
        self.last_time = float("-inf")


class TrackletBuilder:
    """Accumulates one camera's tracks into tracklets.

    Args:
        camera_id: Camera the tracks come from (copied into each ``Tracklet``).
        max_embeddings: Appearance vectors kept per track (the best by quality).
        min_length_s: Tracklets seen for less than this are dropped when finished
            (too short to be a person rather than a detector glitch): at least
            ``round(min_length_s * fps)`` frames, and one.
        fps: The camera's frame rate (``DEFAULT_FPS`` when None); ``set_fps`` changes it.
        finish_after_s: Default idle time after which ``finished()`` closes a
            tracklet; keep it above the tracker's lost-track buffer so a track that
            comes back is not split.
    """

    def __init__(
        self,
        *,
        camera_id: str,
        max_embeddings: int = 10,
        min_length_s: float = 0.5,
        finish_after_s: float = 10.0,
        fps: float | None = None,
    ) -> None:
        if max_embeddings < 1 or not min_length_s >= 0:
            raise ValueError(f"max_embeddings must be >= 1 and min_length_s >= 0, got "
                             f"{max_embeddings}, {min_length_s}")
        self.camera_id = camera_id
        self.max_embeddings = int(max_embeddings)
        self.min_length_s = float(min_length_s)
        self.finish_after_s = float(finish_after_s)
        self.set_fps(DEFAULT_FPS if fps is None else fps)
        self._open: dict[int, _Accumulator] = {}
        self._closed_ids: set[int] = set()
        self.short_track_ids: list[int] = []  # finished tracks below min_length, in order
        self._seq = itertools.count()
        self._now = float("-inf")

    def set_fps(self, fps: float) -> None:
        """Take the camera's frame rate (``min_length_s`` becomes ``min_length`` frames)."""
        if not fps > 0 or not np.isfinite(fps):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.fps = float(fps)
        self.min_length = self.frames_for(self.min_length_s)

    def frames_for(self, seconds: float) -> int:
        """Frames a track needs to have been seen for ``seconds`` (at least one)."""
        return max(1, seconds_to_frames(seconds, self.fps))

    @property
    def num_open(self) -> int:
        """Tracks currently being accumulated."""
        return len(self._open)

    @property
    def open_track_ids(self) -> list[int]:
        """Ids of the tracks currently being accumulated."""
        return list(self._open)

    def update(
        self,
        frame_index: int,
        timestamp_s: float,
        tracks: Tracks,
        all_boxes_xyxy: np.ndarray,
        image_wh: tuple[int, int],
    ) -> None:
        """Add one frame's tracks.

        Args:
            frame_index: Frame index within this camera's source.
            timestamp_s: Timestamp of the frame in seconds.
            tracks: The tracker's output for the frame.
            all_boxes_xyxy: (K, 4) every detection box of the frame (the occluders);
                ``tracks.det_index`` indexes into it.
            image_wh: Image (width, height) in pixels.
        """
        self._now = max(self._now, float(timestamp_s))
        if len(tracks) == 0:
            return
        quality = quality_scores(
            tracks.xyxy, tracks.score, all_boxes_xyxy, image_wh, self_index=tracks.det_index
        )
        has_emb = tracks.embedding.shape[1] > 0
        for row, tid in enumerate(tracks.track_id.tolist()):
            acc = self._open.get(tid)
            if acc is None:
                if tid in self._closed_ids:
                    logger.warning(
                        "camera %s: track %d reappeared after its tracklet was finished; "
                        "raise finish_after_s above the tracker's lost buffer",
                        self.camera_id,
                        tid,
                    )
                acc = self._open[tid] = _Accumulator()
            acc.frames.append(int(frame_index))
            acc.times.append(float(timestamp_s))
            acc.boxes.append(tracks.xyxy[row])
            acc.last_time = float(timestamp_s)
            # Zero rows are detections the runner chose not to embed: no evidence.
            if has_emb and np.any(tracks.embedding[row]):
                item = (float(quality[row]), next(self._seq), tracks.embedding[row].copy())
                if len(acc.heap) < self.max_embeddings:
                    heapq.heappush(acc.heap, item)
                elif item[0] > acc.heap[0][0]:
                    heapq.heapreplace(acc.heap, item)

    def _build(self, tid: int, acc: _Accumulator) -> Tracklet | None:
        self._closed_ids.add(tid)
        if len(acc.frames) < self.min_length:
            self.short_track_ids.append(tid)
            return None
        return self._summarise(tid, acc)

    def _summarise(self, tid: int, acc: _Accumulator) -> Tracklet:
        if acc.heap:
            q = np.array([h[0] for h in acc.heap], np.float64)
            vectors = np.stack([h[2] for h in acc.heap]).astype(np.float64)
            # All-zero qualities (e.g. tiny boxes only) still deserve a plain mean.
            weights = q if q.sum() > 0 else np.ones_like(q)
            pooled = (weights[:, None] * vectors).sum(axis=0)
            pooled /= max(float(np.linalg.norm(pooled)), 1e-12)
            embedding = pooled.astype(np.float32)
            quality = float(q.mean())
        else:
            embedding = np.zeros((0,), np.float32)
            quality = 0.0
        return Tracklet(
            camera_id=self.camera_id,
            track_id=int(tid),
            frames=np.asarray(acc.frames, np.int64),
            timestamps_s=np.asarray(acc.times, np.float64),
            xyxy=np.stack(acc.boxes).astype(np.float32),
            embedding=embedding,
            quality=quality,
        )

    def finished(self, older_than_s: float | None = None) -> list[Tracklet]:
        """Close and return tracklets not seen for more than ``older_than_s`` seconds.

        Idle time is measured against the latest timestamp given to ``update``.
        ``None`` uses ``finish_after_s``. Tracklets shorter than ``min_length`` are
        dropped silently. Returned tracklets are sorted by track id.
        """
        limit = self.finish_after_s if older_than_s is None else float(older_than_s)
        done = sorted(t for t, a in self._open.items() if self._now - a.last_time > limit)
        out = [self._build(t, self._open.pop(t)) for t in done]
        return [t for t in out if t is not None]

    def snapshots(self, min_s: float | None = None) -> list[Tracklet]:
        """Tracklets of the tracks still open, as they stand now (nothing is closed).

        For online association, which must see tracklets while they grow. Each call
        pools the kept embeddings afresh, so a later snapshot of the same track carries
        more evidence.

        Args:
            min_s: Only tracks seen for at least this many seconds (None =
                ``min_length_s``).

        Returns:
            Tracklets sorted by track id.
        """
        limit = self.min_length if min_s is None else self.frames_for(min_s)
        return [self._summarise(t, self._open[t]) for t in sorted(self._open)
                if len(self._open[t].frames) >= limit]

    def finish(self) -> list[Tracklet]:
        """Close and return every open tracklet (end of stream), sorted by track id."""
        out = [self._build(t, self._open.pop(t)) for t in sorted(self._open)]
        return [t for t in out if t is not None]
