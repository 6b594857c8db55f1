"""Per-camera detection options: input size from the resolution, tiling, regions of interest.

A camera's :class:`ViewOptions` say how its frames reach the network; :func:`plan_view`
turns them into a :class:`ViewPlan` once the frame size is known (the first frame):

* **input size** — ``imgsz="auto"`` keeps the scale at which the network sees the frame
  (``min(net_h / frame_h, net_w / frame_w)``) at or above ``min_scale``: a 960x540 or
  768x576 camera keeps the detector's 384x640 (scale 0.67), a 1920x1080 camera gets a
  larger input (capped at ``max_side`` on its long side);
* **tiles** — ``tiles="auto"`` tiles the frame when the chosen input still sees it below
  ``min_scale``: overlapping tiles seen at ``min_scale`` plus the whole region downscaled
  (``pipeline.detection.tiling`` merges them);
* **regions of interest** — polygons in frame pixels around where people appear (whole
  bodies, not just the floor: the input is cropped to them); detections whose box centre
  is outside every polygon are dropped, and with ``roi_crop`` the network only sees the
  polygons' bounding box (sky and walls are not computed).

Every camera gets the default options unless its config says otherwise; a camera whose
plan is the detector's own input on the whole frame (the 960x540 sample, PETS09 at
768x576) takes the plain path, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.detection.tiling import tile_grid

__all__ = ["ViewOptions", "ViewPlan", "plan_view", "points_in_polygons", "check_polygon"]

TILE_MODES = ("off", "auto", "on")


def _segments_cross(p: np.ndarray, q: np.ndarray, r: np.ndarray, s: np.ndarray) -> bool:
    """Proper intersection of segments pq and rs (shared end points do not count)."""
    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    d1, d2 = orient(r, s, p), orient(r, s, q)
    d3, d4 = orient(p, q, r), orient(p, q, s)
    return d1 * d2 < 0 and d3 * d4 < 0


def check_polygon(points: Any, label: str) -> tuple[tuple[float, float], ...]:
    """Validate one region-of-interest polygon.

    Args:
        points: A sequence of at least three [x, y] pixel points (not closed: the last
            point joins the first).
        label: Names the polygon in error messages (e.g. "roi[0]").

    Returns:
        The points as a tuple of (x, y) floats.

    Raises:
        ValueError: Fewer than three points, a point that is not two finite numbers >= 0,
            zero area, or edges that cross each other.
    """
    if isinstance(points, (str, bytes)) or not isinstance(points, Sequence) or len(points) < 3:
        raise ValueError(f"{label} must be a list of at least 3 [x, y] points in pixels, "
                         f"got {points!r}")
    out = []
    for k, point in enumerate(points):
        try:
            x, y = (float(v) for v in point)
        except (TypeError, ValueError):
            raise ValueError(f"{label} point {k} must be [x, y] numbers, got {point!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)) or x < 0 or y < 0:
            raise ValueError(f"{label} point {k} must be finite pixel coordinates >= 0, "
                             f"got {point!r}")
        out.append((x, y))
    poly = np.array(out)
    n = len(poly)
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing edge
            if _segments_cross(poly[i], poly[(i + 1) % n], poly[j], poly[(j + 1) % n]):
                raise ValueError(f"{label} edges {i} and {j} cross; list the points in "
                                 "order around the region")
    area = 0.5 * abs(float(np.dot(poly[:, 0], np.roll(poly[:, 1], -1))
                           - np.dot(poly[:, 1], np.roll(poly[:, 0], -1))))
    if area < 1.0:
        raise ValueError(f"{label} has zero area (points on one line?): {points!r}")
    return tuple(out)


def points_in_polygons(xy: np.ndarray, polygons: Sequence[Sequence[tuple[float, float]]]
                       ) -> np.ndarray:
    """bool (N,): points inside (or on the edge of) any polygon (even-odd rule)."""
    pts = np.asarray(xy, np.float64).reshape(-1, 2)
    inside = np.zeros(len(pts), bool)
    for polygon in polygons:
        poly = np.asarray(polygon, np.float64)
        a, b = poly, np.roll(poly, -1, axis=0)
        x, y = pts[:, 0:1], pts[:, 1:2]  # (N, 1) against (E,) edges
        straddles = (a[:, 1] > y) != (b[:, 1] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
        hits = (straddles & (x < x_cross)).sum(1) % 2 == 1
        inside |= hits
    return inside


def _ceil32(value: float) -> int:
    return max(32, int(math.ceil(value / 32.0)) * 32)


@dataclass(frozen=True)
class ViewOptions:
    """How one camera's frames are detected (the ``detection`` mapping of a camera).

    Attributes:
        imgsz: "auto" (default) = from the frame's resolution (see ``min_scale``,
            ``max_side``); None = always the detector's input size; or [height, width]
            (multiples of 32).
        min_scale: Scale floor (network pixels per frame pixel) for "auto" input sizes
            and "auto" tiling. 0.65 keeps a 1080p camera at about the scale the shipped
            384x640 input sees PETS09 and the sample (0.67) with: MOT17 1080p recall at
            score >= 0.5 0.245 -> 0.469 for 3.4-3.5x the detection time (0.5: 0.351,
            1.9-2.1x; docs/DETECTION.md).
        max_side: Longest side, in pixels, an "auto" input size may have.
        tiles: "off"; "on"; or "auto" = only where the input still sees the region below
            ``min_scale``. Tiles are seen at ``min_scale`` with the detector's input size.
        tile_overlap_px: Minimum overlap of neighbouring tiles, in frame pixels.
        merge_iou: NMS IoU threshold when merging tiles and the full-region pass.
        roi: Regions of interest: polygons of [x, y] frame pixels. Empty = whole frame.
        roi_crop: With a roi, detect only in the polygons' bounding box.
    """

    imgsz: tuple[int, int] | str | None = "auto"
    min_scale: float = 0.65
    max_side: int = 1280
    tiles: str = "off"
    tile_overlap_px: int = 96
    merge_iou: float = 0.6
    roi: tuple[tuple[tuple[float, float], ...], ...] = field(default_factory=tuple)
    roi_crop: bool = True

    def __post_init__(self) -> None:
        imgsz = self.imgsz
        if isinstance(imgsz, str):
            if imgsz != "auto":
                raise ValueError(f"imgsz must be [height, width], 'auto' or null, got {imgsz!r}")
        elif imgsz is not None:
            try:
                h, w = (int(v) for v in imgsz)
            except (TypeError, ValueError):
                raise ValueError(f"imgsz must be [height, width], 'auto' or null, "
                                 f"got {imgsz!r}") from None
            if h <= 0 or w <= 0 or h % 32 or w % 32:
                raise ValueError(f"imgsz must be positive multiples of 32, got {imgsz!r}")
            object.__setattr__(self, "imgsz", (h, w))
        if not 0.05 <= self.min_scale <= 4.0:
            raise ValueError(f"min_scale must be in [0.05, 4], got {self.min_scale}")
        if self.max_side < 32:
            raise ValueError(f"max_side must be >= 32, got {self.max_side}")
        if self.tiles not in TILE_MODES:
            raise ValueError(f"tiles must be one of {', '.join(TILE_MODES)}, got {self.tiles!r}")
        if self.tile_overlap_px < 0:
            raise ValueError(f"tile_overlap_px must be >= 0, got {self.tile_overlap_px}")
        if not 0.0 < self.merge_iou <= 1.0:
            raise ValueError(f"merge_iou must be in (0, 1], got {self.merge_iou}")
        if isinstance(self.roi, (str, bytes)) or not isinstance(self.roi, Sequence):
            raise ValueError(f"roi must be a list of polygons, got {self.roi!r}")
        object.__setattr__(self, "roi", tuple(
            check_polygon(p, f"roi[{i}]") for i, p in enumerate(self.roi)))

    @property
    def is_plain(self) -> bool:
        """True when frames go to the detector unchanged (the default path)."""
        return self.imgsz is None and self.tiles == "off" and not self.roi


@dataclass(frozen=True)
class ViewPlan:
    """What the network sees of one camera's frames (for one frame size).

    Attributes:
        imgsz: Network input (height, width).
        region_xyxy: int (4,) the part of the frame that is detected (ROI crop or frame).
        tiles_xyxy: int (T, 4) tiles in frame pixels; (0, 4) = no tiling.
        roi: Polygons that filter detections by box centre (empty = none).
    """

    imgsz: tuple[int, int]
    region_xyxy: np.ndarray
    tiles_xyxy: np.ndarray
    roi: tuple[tuple[tuple[float, float], ...], ...] = ()

    def is_plain(self, base_imgsz: tuple[int, int]) -> bool:
        """True when this plan is the plain path: base input size, whole frame, no ROI."""
        return (tuple(self.imgsz) == tuple(base_imgsz) and not len(self.tiles_xyxy)
                and not self.roi and int(self.region_xyxy[0]) == int(self.region_xyxy[1]) == 0)

    @property
    def scale(self) -> float:
        """Network pixels per frame pixel of the full-region pass."""
        w, h = self.region_xyxy[2:] - self.region_xyxy[:2]
        return min(self.imgsz[0] / h, self.imgsz[1] / w)


def _scale(imgsz: tuple[int, int], width: float, height: float) -> float:
    return min(imgsz[0] / height, imgsz[1] / width)


def plan_view(options: ViewOptions, frame_wh: tuple[int, int],
              base_imgsz: tuple[int, int], resizable: bool = True) -> ViewPlan:
    """Choose input size, region and tiles for frames of size ``frame_wh``.

    Args:
        options: The camera's options.
        frame_wh: Frame (width, height) in pixels.
        base_imgsz: The detector's input (height, width).
        resizable: False when the detector cannot run at another size (a fixed-size
            export): "auto" input sizes then keep ``base_imgsz``.

    Raises:
        ValueError: A ROI polygon lies (partly) outside the frame.
    """
    width, height = frame_wh
    region = np.array([0, 0, width, height], np.int64)
    for i, polygon in enumerate(options.roi):
        poly = np.asarray(polygon)
        if poly[:, 0].max() > width or poly[:, 1].max() > height:
            raise ValueError(f"roi[{i}] reaches outside the {width}x{height} frame "
                             f"(max x {poly[:, 0].max():g}, max y {poly[:, 1].max():g})")
    if options.roi and options.roi_crop:
        pts = np.concatenate([np.asarray(p) for p in options.roi])
        region = np.array([math.floor(pts[:, 0].min()), math.floor(pts[:, 1].min()),
                           math.ceil(pts[:, 0].max()), math.ceil(pts[:, 1].max())], np.int64)
    rw, rh = int(region[2] - region[0]), int(region[3] - region[1])
    imgsz = base_imgsz
    if isinstance(options.imgsz, tuple):
        imgsz = options.imgsz
    elif (options.imgsz == "auto" and resizable
          and _scale(base_imgsz, rw, rh) < options.min_scale):
        target = min(options.min_scale, options.max_side / max(rw, rh))
        imgsz = (_ceil32(rh * target), _ceil32(rw * target))
        imgsz = (min(imgsz[0], options.max_side), min(imgsz[1], options.max_side))
    tiles = np.zeros((0, 4), np.int64)
    scale = _scale(imgsz, rw, rh)
    tile_on = options.tiles == "on" or (options.tiles == "auto"
                                        and scale < options.min_scale * 0.999)
    if tile_on:
        tile_scale = max(options.min_scale, scale)
        tile_wh = (round(imgsz[1] / tile_scale), round(imgsz[0] / tile_scale))
        overlap = min(options.tile_overlap_px, min(tile_wh) - 1)
        tiles = tile_grid(rw, rh, tile_wh, overlap) + np.tile(region[:2], 2)
        if len(tiles) == 1:  # one tile = the region itself: nothing to add
            tiles = np.zeros((0, 4), np.int64)
    return ViewPlan(imgsz=imgsz, region_xyxy=region, tiles_xyxy=tiles, roi=options.roi)
