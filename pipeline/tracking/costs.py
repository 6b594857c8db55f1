"""Vectorised association costs: matrices in, matrices out, no state.

Conventions: rows are tracks, columns are detections; a cost of ``inf`` means
"never match" (``pipeline.geometry.linear_assignment`` honours it).

Why the default fusion is a weighted sum and not ``min(iou, appearance)``: with
``min``, a pair that overlaps well is cheap however different the two people look,
so when two people cross (high mutual IoU) appearance cannot veto the swap — the
exact case appearance is there for. A weighted sum makes a clearly different
appearance cost something even under high IoU. ``min`` stays available
(``mode="min"``, the BoT-SORT recipe); tests/test_tracking.py measures both on a
crossing scenario.
"""

from __future__ import annotations

import numpy as np

from pipeline.geometry import iou_matrix
from pipeline.tracking.kalman import CHI2_95

__all__ = [
    "FUSION_MODES",
    "iou_distance",
    "embedding_distance",
    "fuse_score",
    "gate_by_iou",
    "gate_by_mahalanobis",
    "fuse_motion_appearance",
]

FUSION_MODES = ("weighted", "min")


def iou_distance(tracks_xyxy: np.ndarray, dets_xyxy: np.ndarray) -> np.ndarray:
    """``1 - IoU`` of every pair: (N, 4), (M, 4) xyxy pixels -> float32 (N, M) in [0, 1]."""
    return (1.0 - iou_matrix(tracks_xyxy, dets_xyxy)).astype(np.float32)


def embedding_distance(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
    """Cosine distance ``1 - cos`` of every pair: (N, D), (M, D) -> float32 (N, M) in [0, 2].

    Rows are re-normalised defensively (zero rows stay zero, giving distance 1), so
    slightly drifted EMA vectors are handled too.
    """
    a = np.asarray(emb_a, dtype=np.float32)
    b = np.asarray(emb_b, dtype=np.float32)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), np.float32)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding widths differ: {a.shape} vs {b.shape}")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.clip(1.0 - a @ b.T, 0.0, 2.0).astype(np.float32)


def fuse_score(iou_cost: np.ndarray, det_scores: np.ndarray) -> np.ndarray:
    """ByteTrack's score fusion: ``1 - IoU * score`` per (track, detection).

    Args:
        iou_cost: (N, M) ``1 - IoU``.
        det_scores: (M,) detection confidences in [0, 1].

    Returns:
        float32 (N, M): a weak detection needs more overlap to be accepted.
    """
    iou = 1.0 - np.asarray(iou_cost, dtype=np.float32)
    return (1.0 - iou * np.asarray(det_scores, dtype=np.float32)[None, :]).astype(np.float32)


def gate_by_iou(cost: np.ndarray, iou: np.ndarray, min_iou: float) -> np.ndarray:
    """Copy of ``cost`` with ``inf`` where ``iou < min_iou`` (both (N, M))."""
    out = np.array(cost, dtype=np.float32, copy=True)
    out[np.asarray(iou) < min_iou] = np.inf
    return out


def gate_by_mahalanobis(
    cost: np.ndarray, squared_distance: np.ndarray, threshold: float = CHI2_95[4]
) -> np.ndarray:
    """Copy of ``cost`` with ``inf`` where the squared Mahalanobis distance exceeds ``threshold``.

    The default is the chi-square 95% quantile for a 4-d ``xyah`` measurement.
    """
    out = np.array(cost, dtype=np.float32, copy=True)
    out[np.asarray(squared_distance) > threshold] = np.inf
    return out


def fuse_motion_appearance(
    motion_cost: np.ndarray,
    appearance_cost: np.ndarray,
    *,
    iou: np.ndarray,
    squared_mahalanobis: np.ndarray,
    min_iou: float = 0.1,
    gate_threshold: float = CHI2_95[4],
    appearance_weight: float = 0.5,
    appearance_thresh: float = 0.25,
    mode: str = "weighted",
) -> np.ndarray:
    """Combine motion and appearance costs, using appearance only inside motion gates.

    A pair is allowed when the boxes overlap (``iou >= min_iou``), or — to re-acquire
    a track whose prediction drifted off its person — when the detection lies inside
    the Kalman 95% gate *and* looks like the track (``appearance <= appearance_thresh``).
    Everything else is ``inf``.

    Args:
        motion_cost: (N, M) motion cost in [0, 1], e.g. ``fuse_score(iou_distance(...))``.
        appearance_cost: (N, M) cosine distance (``embedding_distance``).
        iou: (N, M) IoU of predicted track boxes and detections.
        squared_mahalanobis: (N, M) squared Mahalanobis distances.
        min_iou: Overlap needed for a pair to be allowed on motion alone.
        gate_threshold: Mahalanobis gate (squared distance).
        appearance_weight: ``w`` in ``(1 - w) * motion + w * appearance`` ("weighted").
        appearance_thresh: Appearance distance under which two observations are
            considered the same person ("min" mode trusts appearance only below it).
        mode: "weighted" (default) or "min" (``min(motion, appearance)``).

    Returns:
        float32 (N, M) fused cost, ``inf`` where not allowed.
    """
    motion = np.asarray(motion_cost, dtype=np.float32)
    app = np.clip(np.asarray(appearance_cost, dtype=np.float32), 0.0, 1.0)
    similar = app <= appearance_thresh
    allowed = (np.asarray(iou) >= min_iou) | (
        (np.asarray(squared_mahalanobis) <= gate_threshold) & similar
    )
    if mode == "weighted":
        fused = (1.0 - appearance_weight) * motion + appearance_weight * app
    elif mode == "min":
        fused = np.minimum(motion, np.where(similar, app, 1.0))
    else:
        raise ValueError(f"unknown fusion mode {mode!r}; choose one of {FUSION_MODES}")
    return np.where(allowed, fused, np.inf).astype(np.float32)
