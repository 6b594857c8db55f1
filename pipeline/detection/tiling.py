"""Tiled detection for large frames: the tile grid and the merge of per-tile boxes.

A 1920x1080 frame letterboxed into a 384x640 network input shrinks 3x, so a person 100 px
tall becomes ~33 px, below what a nano YOLO finds reliably. Tiling runs the network on
overlapping windows of the frame at a larger scale (plus the whole frame downscaled, for
the people too big for one tile) and merges the boxes in frame coordinates.

Merging has one difficulty plain NMS does not solve: a person cut by a tile's inner edge
comes back as a partial box (their top half, say) that overlaps the whole-person box of
the neighbouring tile or of the full-frame pass with a low IoU. Such boxes are flagged as
*cut* (an edge within ``edge_px`` of an inner tile edge) and fused with any box that
reaches past the cut line and agrees with it once the cut sides are extended (the union
is kept); everything else goes through ordinary greedy NMS.

All functions are pure numpy; boxes are float32 xyxy in frame pixels.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.geometry import iou_matrix

__all__ = ["tile_grid", "cut_sides", "merge_tiled"]

# Column order of the (N, 4) ``cut`` flags: which side of a box lies on an inner tile edge.
LEFT, TOP, RIGHT, BOTTOM = 0, 1, 2, 3


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced tile starts along one axis; neighbours overlap by >= ``overlap``."""
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def tile_grid(width: int, height: int, tile_wh: tuple[int, int], overlap_px: int
              ) -> np.ndarray:
    """Overlapping tiles that cover a ``width`` x ``height`` region.

    Tiles have the given size (clipped to the region when the region is smaller) and
    are spread evenly, so neighbours overlap by at least ``overlap_px`` (more when the
    region does not divide evenly) and the last tile ends exactly at the region's edge.

    Args:
        width: Region width in pixels (> 0).
        height: Region height in pixels (> 0).
        tile_wh: Tile (width, height) in pixels.
        overlap_px: Minimum overlap of neighbouring tiles in pixels, smaller than both
            tile sides. A person shorter than this is whole in at least one tile.

    Returns:
        int64 (N, 4) xyxy tiles, row by row (top to bottom, left to right).

    Raises:
        ValueError: A size is not positive or the overlap does not fit in a tile.
    """
    tile_w, tile_h = (int(v) for v in tile_wh)
    if width <= 0 or height <= 0 or tile_w <= 0 or tile_h <= 0:
        raise ValueError(f"tile_grid needs positive sizes, got region {width}x{height}, "
                         f"tile {tile_w}x{tile_h}")
    if not 0 <= overlap_px < min(tile_w, tile_h):
        raise ValueError(f"tile overlap {overlap_px} px must be >= 0 and smaller than the "
                         f"tile ({tile_w}x{tile_h} px)")
    tile_w, tile_h = min(tile_w, width), min(tile_h, height)
    xs = _starts(width, tile_w, overlap_px)
    ys = _starts(height, tile_h, overlap_px)
    return np.array([[x, y, x + tile_w, y + tile_h] for y in ys for x in xs], np.int64)


def cut_sides(xyxy: np.ndarray, tile_xyxy: np.ndarray, region_xyxy: np.ndarray,
              edge_px: float = 2.0) -> np.ndarray:
    """Which sides of boxes found in one tile lie on an inner edge of that tile.

    An inner edge is a tile edge that is not also the edge of the detected region (the
    frame, or the crop of a region of interest): a box that ends there may continue in
    the neighbouring tile.

    Args:
        xyxy: float (N, 4) boxes in frame pixels, found in this tile.
        tile_xyxy: (4,) the tile in frame pixels.
        region_xyxy: (4,) the region the tiles cover, in frame pixels.
        edge_px: A box side within this distance of an inner edge counts as cut.

    Returns:
        bool (N, 4) flags in the order left, top, right, bottom.
    """
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    tile = np.asarray(tile_xyxy, np.float32)
    region = np.asarray(region_xyxy, np.float32)
    inner = np.array([tile[0] > region[0], tile[1] > region[1],
                      tile[2] < region[2], tile[3] < region[3]])
    near = np.abs(boxes - tile[None, :]) <= edge_px
    return near & inner[None, :]


def _extend(boxes: np.ndarray, cut: np.ndarray, towards: np.ndarray) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Move each cut side of ``boxes`` out to ``towards`` where that box reaches past it.

    Args:
        boxes: float (M, 4) xyxy.
        cut: bool (M, 4) cut sides of ``boxes``.
        towards: float (M, 4) the boxes they are compared with (row by row).

    Returns:
        The extended (M, 4) boxes and bool (M,): some side was extended by more than 1 px.
    """
    lower = np.minimum(boxes[:, :2], towards[:, :2])
    upper = np.maximum(boxes[:, 2:], towards[:, 2:])
    reach = np.concatenate([towards[:, :2] < boxes[:, :2] - 1,
                            towards[:, 2:] > boxes[:, 2:] + 1], axis=1) & cut
    out = np.where(reach, np.concatenate([lower, upper], axis=1), boxes)
    return out, reach.any(1)


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M,) IoU of row i of ``a`` with row i of ``b`` (both (M, 4) xyxy)."""
    inter = (np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
             * np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None))
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def _cut_match(i: int, rest: np.ndarray, xyxy: np.ndarray, cut: np.ndarray,
               min_iou: float) -> np.ndarray:
    """bool (len(rest),): boxes in ``rest`` that are box ``i``'s person cut by a tile edge.

    Each box of a pair is extended on its cut sides as far as the other box reaches past
    them (a cut box says nothing about where the person ends on that side); the pair is
    one person when some side was extended and the extended boxes overlap with IoU >=
    ``min_iou``. A partial box and a whole box, or two halves, become the same box.
    """
    others = xyxy[rest]
    mine = np.repeat(xyxy[i][None], len(rest), axis=0)
    mine_ext, mine_reach = _extend(mine, np.repeat(cut[i][None], len(rest), axis=0), others)
    others_ext, others_reach = _extend(others, cut[rest], mine)
    same = _paired_iou(mine_ext, others_ext) >= min_iou
    overlap = ((np.minimum(mine[:, 2], others[:, 2]) > np.maximum(mine[:, 0], others[:, 0]))
               & (np.minimum(mine[:, 3], others[:, 3]) > np.maximum(mine[:, 1], others[:, 1])))
    return overlap & (mine_reach | others_reach) & same


def merge_tiled(xyxy: np.ndarray, score: np.ndarray, cut: np.ndarray, *,
                iou: float = 0.5, min_cut_iou: float = 0.6,
                max_det: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Merge boxes from overlapping tiles (and the full-frame pass) into one set.

    Greedy, highest score first: each kept box suppresses the remaining boxes it
    overlaps with IoU >= ``iou`` (ordinary NMS) and absorbs the boxes that are the same
    person cut by a tile edge (one of the pair has a cut side that the other reaches
    past, and with each box extended over its cut sides as far as the other reaches,
    the two have IoU >= ``min_cut_iou``); absorbed boxes grow the kept box to their
    union. A kept box keeps its own score.

    Args:
        xyxy: float (N, 4) boxes in frame pixels.
        score: float (N,) confidences.
        cut: bool (N, 4) cut sides from :func:`cut_sides` (all False for full-frame boxes).
        iou: NMS IoU threshold.
        min_cut_iou: IoU of the extended pair needed to fuse a cut box.
        max_det: Maximum boxes returned.

    Returns:
        (float32 (M, 4) xyxy, float32 (M,) scores), highest score first.
    """
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    scores = np.asarray(score, np.float32).reshape(-1)
    cut = np.asarray(cut, bool).reshape(-1, 4)
    if not len(boxes) == len(scores) == len(cut):
        raise ValueError(f"merge_tiled: {len(boxes)} boxes, {len(scores)} scores, "
                         f"{len(cut)} cut rows")
    order = np.argsort(-scores, kind="stable")
    boxes, scores, cut = boxes[order], scores[order], cut[order]
    n = len(boxes)
    suppress = iou_matrix(boxes, boxes) >= iou
    # Cut pairs, computed only from the rows of cut boxes (the test is symmetric).
    fuse = np.zeros((n, n), bool)
    everyone = np.arange(n)
    for i in np.flatnonzero(cut.any(1)):
        fuse[i] = _cut_match(i, everyone, boxes, cut, min_cut_iou)
    fuse |= fuse.T
    np.fill_diagonal(fuse, False)
    alive = np.ones(n, bool)
    kept_xyxy, kept_score = [], []
    for i in range(n):
        if not alive[i]:
            continue
        alive[i] = False
        merged = boxes[i].copy()
        fused = fuse[i] & alive
        if fused.any():
            group = boxes[fused]
            merged[:2] = np.minimum(merged[:2], group[:, :2].min(0))
            merged[2:] = np.maximum(merged[2:], group[:, 2:].max(0))
        alive &= ~(fused | suppress[i])
        kept_xyxy.append(merged)
        kept_score.append(scores[i])
        if len(kept_xyxy) == max_det:
            break
    if not kept_xyxy:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return np.stack(kept_xyxy).astype(np.float32), np.asarray(kept_score, np.float32)
