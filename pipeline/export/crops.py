"""One best view per track, kept as a small crop for the review page.

A track's view is rated by ``score * (1 - overlap)``: the detector's confidence times
the part of the box NOT covered by another track's box of the same frame (the largest
intersection over this box's area). A person partly hidden behind another is a poor
picture to show even at a high score. The crop is cut (and shrunk to at most
``max_height_px``) only when a track's rating improves, so the cost per frame is one
vectorised rating of the frame's boxes plus a few small copies; JPEG encoding is left
to whoever stores the crop (the run store encodes at its flush, once per track).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from pipeline.geometry import ioa_matrix
from pipeline.types import TrackKey, Tracks

__all__ = ["BestCrops", "view_ratings", "encode_jpeg"]


def view_ratings(xyxy: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``score * (1 - max overlap with another box)`` per box, float32 (N,).

    Args:
        xyxy: float32 (N, 4) boxes of one frame, pixels.
        score: float32 (N,) detector confidences.
    """
    n = int(xyxy.shape[0])
    if n == 0:
        return np.zeros((0,), np.float32)
    overlap = np.zeros(n, np.float32)
    if n > 1:
        ioa = ioa_matrix(xyxy, xyxy)
        np.fill_diagonal(ioa, 0.0)
        overlap = ioa.max(axis=1)
    return (np.clip(score, 0.0, 1.0) * (1.0 - np.clip(overlap, 0.0, 1.0))).astype(np.float32)


class BestCrops:
    """Each track's best view so far, per camera.

    Args:
        max_height_px: Crops taller than this are shrunk to it (aspect kept).
        min_gain: A new view replaces the kept one only if its rating is higher by
            this much (avoids re-cutting on noise-level changes).
    """

    def __init__(self, *, max_height_px: int = 128, min_gain: float = 0.01) -> None:
        if max_height_px < 8:
            raise ValueError(f"max_height_px must be >= 8, got {max_height_px}")
        self.max_height_px = int(max_height_px)
        self.min_gain = float(min_gain)
        self._best: dict[TrackKey, float] = {}

    def update(self, camera_id: str, image_bgr: np.ndarray,
               tracks: Tracks) -> dict[int, np.ndarray]:
        """Rate one frame's tracks; returns ``track_id -> crop`` for those that improved.

        Args:
            camera_id: Camera of the frame.
            image_bgr: uint8 (H, W, 3) BGR frame.
            tracks: The frame's tracks (xyxy pixel boxes, scores).

        Returns:
            uint8 (h, w, 3) BGR crops, h <= ``max_height_px``, owned by the caller.
        """
        if len(tracks) == 0:
            return {}
        ratings = view_ratings(tracks.xyxy, tracks.score)
        height, width = image_bgr.shape[:2]
        out: dict[int, np.ndarray] = {}
        for row, tid in enumerate(tracks.track_id.tolist()):
            key = (camera_id, tid)
            rating = float(ratings[row])
            if rating <= self._best.get(key, -1.0) + self.min_gain:
                continue
            x1, y1, x2, y2 = tracks.xyxy[row].tolist()
            left, top = max(0, int(x1)), max(0, int(y1))
            right, bottom = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
            if right - left < 2 or bottom - top < 2:
                continue
            self._best[key] = rating
            out[tid] = self._shrink(image_bgr[top:bottom, left:right])
        return out

    def retain(self, camera_id: str, track_ids: Iterable[int]) -> None:
        """Forget the ratings of ``camera_id``'s tracks other than ``track_ids`` (those
        still open): an endless run keeps nothing per track that ended."""
        keep = set(track_ids)
        for key in [k for k in self._best if k[0] == camera_id and k[1] not in keep]:
            del self._best[key]

    def _shrink(self, crop: np.ndarray) -> np.ndarray:
        h, w = crop.shape[:2]
        if h <= self.max_height_px:
            return crop.copy()
        scale = self.max_height_px / h
        size = (max(1, round(w * scale)), self.max_height_px)
        return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(crop_bgr: np.ndarray, quality: int = 85) -> bytes:
    """A BGR crop as JPEG bytes."""
    ok, data = cv2.imencode(".jpg", crop_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"could not encode a {crop_bgr.shape} crop as JPEG")
    return data.tobytes()
