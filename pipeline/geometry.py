"""Box conversions, IoU matrices and the one linear-assignment wrapper.

All functions are vectorised and pure: arrays in, arrays out. Box formats are
named in argument names (``xyxy`` = x1, y1, x2, y2; ``tlwh`` = left, top,
width, height; ``xyah`` = centre x, centre y, aspect w/h, height).
"""

from __future__ import annotations

import lap
import numpy as np

__all__ = [
    "xyxy_to_tlwh",
    "tlwh_to_xyxy",
    "xyxy_to_xyah",
    "xyah_to_xyxy",
    "box_area",
    "iou_matrix",
    "ioa_matrix",
    "clip_xyxy",
    "linear_assignment",
]


def xyxy_to_tlwh(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) tlwh."""
    out = np.array(xyxy, dtype=np.float32, copy=True).reshape(-1, 4)
    out[:, 2:] -= out[:, :2]
    return out


def tlwh_to_xyxy(tlwh: np.ndarray) -> np.ndarray:
    """(N, 4) tlwh -> (N, 4) xyxy."""
    out = np.array(tlwh, dtype=np.float32, copy=True).reshape(-1, 4)
    out[:, 2:] += out[:, :2]
    return out


def xyxy_to_xyah(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) centre x, centre y, aspect ratio w/h, height."""
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    h = np.maximum(b[:, 3] - b[:, 1], 1e-6)
    return np.stack([b[:, 0] + w / 2, b[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(N, 4) centre x, centre y, aspect w/h, height -> (N, 4) xyxy (float32)."""
    b = np.asarray(xyah, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] * b[:, 3]
    h = b[:, 3]
    out = np.stack([b[:, 0] - w / 2, b[:, 1] - h / 2, b[:, 0] + w / 2, b[:, 1] + h / 2], axis=1)
    return out.astype(np.float32)


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N,) area (0 for degenerate boxes)."""
    b = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]


def iou_matrix(xyxy_a: np.ndarray, xyxy_b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair: (N, 4), (M, 4) -> (N, M) float32."""
    inter = _intersection(xyxy_a, xyxy_b)
    union = box_area(xyxy_a)[:, None] + box_area(xyxy_b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def ioa_matrix(xyxy_a: np.ndarray, xyxy_b: np.ndarray) -> np.ndarray:
    """Intersection over the area of each box of ``a``: (N, 4), (M, 4) -> (N, M).

    Used to measure how much of a box is covered by a neighbour (occlusion).
    """
    inter = _intersection(xyxy_a, xyxy_b)
    area = box_area(xyxy_a)[:, None]
    return np.where(area > 0, inter / np.maximum(area, 1e-9), 0.0).astype(np.float32)


def clip_xyxy(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip (N, 4) xyxy boxes to an image of ``width`` x ``height`` pixels."""
    out = np.array(xyxy, dtype=np.float32, copy=True).reshape(-1, 4)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out


def linear_assignment(
    cost: np.ndarray, max_cost: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching with a gate.

    Args:
        cost: (N, M) cost matrix; pairs with cost > ``max_cost`` are never matched
            (``inf`` is allowed and means "impossible").
        max_cost: Largest cost of an accepted pair.

    Returns:
        matches: int64 (K, 2) rows (i, j) of matched row/column indices.
        unmatched_rows: int64 indices of rows without a match.
        unmatched_cols: int64 indices of columns without a match.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return (
            np.zeros((0, 2), np.int64),
            np.arange(n, dtype=np.int64),
            np.arange(m, dtype=np.int64),
        )
    # lap needs finite costs; anything above the gate is equally impossible.
    finite = np.where(np.isfinite(cost), cost, max_cost + 1.0)
    finite = np.minimum(finite, max_cost + 1.0)
    _, row_to_col, col_to_row = lap.lapjv(finite, extend_cost=True, cost_limit=max_cost + 1e-9)
    rows = np.flatnonzero(row_to_col >= 0)
    matches = np.stack([rows, row_to_col[rows]], axis=1).astype(np.int64)
    if len(matches):
        keep = finite[matches[:, 0], matches[:, 1]] <= max_cost
        matches = matches[keep]
    matched_rows = set(matches[:, 0].tolist())
    matched_cols = set(matches[:, 1].tolist())
    unmatched_rows = np.array([i for i in range(n) if i not in matched_rows], np.int64)
    unmatched_cols = np.array([j for j in range(m) if j not in matched_cols], np.int64)
    return matches.reshape(-1, 2), unmatched_rows, unmatched_cols
