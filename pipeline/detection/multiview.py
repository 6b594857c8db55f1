"""Detection of a tick's frames with per-camera views (input size, tiles, ROI).

:class:`CameraDetector` sits between the runner and the YOLO detectors. Cameras with plain
options go to the base detector in one call, exactly as without it; the other cameras'
network inputs (the full region, and the tiles when tiled) are grouped by input size
and each group is one ``detect`` call (one network call where the runtime batches).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.detection.tiling import cut_sides, merge_tiled
from pipeline.detection.views import ViewOptions, ViewPlan, plan_view, points_in_polygons
from pipeline.geometry import clip_xyxy
from pipeline.types import Detections

__all__ = ["CameraDetector", "detect_with_plan"]

logger = logging.getLogger(__name__)


def _crop(image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in xyxy)
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def _inputs(image: np.ndarray, plan: ViewPlan) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Network inputs of one frame and their (4,) frame-pixel windows (region first)."""
    windows = [plan.region_xyxy, *plan.tiles_xyxy]
    full = plan.region_xyxy
    whole = full[0] == 0 and full[1] == 0 and (full[2], full[3]) == (image.shape[1],
                                                                     image.shape[0])
    crops = [image if whole else _crop(image, full)]
    crops += [_crop(image, tile) for tile in plan.tiles_xyxy]
    return crops, windows


def _assemble(parts: Sequence[Detections], windows: Sequence[np.ndarray], plan: ViewPlan,
              frame_wh: tuple[int, int], merge_iou: float) -> Detections:
    """Per-input detections -> one frame's Detections (shifted, merged, ROI-filtered)."""
    boxes, scores, cuts = [], [], []
    for k, (dets, window) in enumerate(zip(parts, windows, strict=True)):
        xyxy = dets.xyxy + np.tile(window[:2], 2).astype(np.float32)
        boxes.append(xyxy)
        scores.append(dets.score)
        cuts.append(np.zeros((len(xyxy), 4), bool) if k == 0
                    else cut_sides(xyxy, window, plan.region_xyxy))
    xyxy, score = np.concatenate(boxes), np.concatenate(scores)
    if len(parts) > 1:
        xyxy, score = merge_tiled(xyxy, score, np.concatenate(cuts), iou=merge_iou)
    if plan.roi and len(xyxy):
        centres = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        keep = points_in_polygons(centres, plan.roi)
        xyxy, score = xyxy[keep], score[keep]
    return Detections(xyxy=clip_xyxy(xyxy, *frame_wh), score=score)


def detect_with_plan(detector: Any, image: np.ndarray, plan: ViewPlan,
                     merge_iou: float = 0.6) -> Detections:
    """Detect one frame as ``plan`` says with one ``detector.detect`` call.

    ``detector`` must have been built with ``plan.imgsz``.
    """
    crops, windows = _inputs(image, plan)
    parts = detector.detect(crops)
    return _assemble(parts, windows, plan, (image.shape[1], image.shape[0]), merge_iou)


class CameraDetector:
    """Detects the frames of a tick, each camera with its own :class:`ViewOptions`.

    Args:
        base: The configured detector (its input size is the default input size).
        make_detector: Builds a detector like ``base`` for another (height, width)
            input; called once per distinct size, on the first frame that needs it.
        views: ``ViewOptions`` by camera id; cameras not listed use the plain path.
        where: Names the configuration in errors (e.g. its file).

    Example:
        >>> detector = CameraDetector(base=yolo, make_detector=lambda hw: build(hw),
        ...                           views={"gate": ViewOptions(imgsz="auto")})
        >>> per_frame = detector.detect(images, camera_ids=["gate", "hall"])
    """

    def __init__(self, *, base: Any, make_detector: Callable[[tuple[int, int]], Any],
                 views: Mapping[str, ViewOptions], where: str = "") -> None:
        self.base = base
        self.where = where
        self._make = make_detector
        self.views = {cid: v for cid, v in views.items() if not v.is_plain}
        self._detectors: dict[tuple[int, int], Any] = {tuple(base.imgsz): base}
        self._plans: dict[tuple[str, int, int], ViewPlan] = {}

    def plan(self, camera_id: str, frame_wh: tuple[int, int]) -> ViewPlan:
        """The camera's plan for this frame size (computed once, then cached).

        Raises:
            ValueError: The camera's ROI does not fit its frames (names the camera).
        """
        key = (camera_id, *frame_wh)
        if key not in self._plans:
            try:
                plan = plan_view(self.views[camera_id], frame_wh, tuple(self.base.imgsz),
                                 resizable=getattr(self.base, "resizable", True))
            except ValueError as error:
                prefix = f"{self.where}: " if self.where else ""
                raise ValueError(f"{prefix}camera {camera_id!r}: detection: {error}; fix "
                                 "the camera's detection.roi") from None
            logger.info("camera %s: %dx%d frames detected at %s, scale %.2f, %d tiles%s",
                        camera_id, *frame_wh, plan.imgsz, plan.scale, len(plan.tiles_xyxy),
                        f", roi crop {plan.region_xyxy.tolist()}" if plan.roi else "")
            self._plans[key] = plan
        return self._plans[key]

    def _detector(self, imgsz: tuple[int, int]) -> Any:
        if imgsz not in self._detectors:
            self._detectors[imgsz] = self._make(imgsz)
        return self._detectors[imgsz]

    def detect(self, images_bgr: Sequence[np.ndarray],
               camera_ids: Sequence[str] | None = None) -> list[Detections]:
        """Detect persons in one tick's frames.

        Args:
            images_bgr: uint8 (H, W, 3) BGR frames.
            camera_ids: The camera of each frame (same order); None = all plain.

        Returns:
            One ``Detections`` per frame, in frame pixels, in input order.
        """
        images = list(images_bgr)
        ids = list(camera_ids) if camera_ids is not None else [None] * len(images)
        if len(ids) != len(images):
            raise ValueError(f"detect(): {len(images)} images but {len(ids)} camera ids")
        plans = {i: self.plan(cid, (images[i].shape[1], images[i].shape[0]))
                 for i, cid in enumerate(ids) if cid in self.views}
        plain = [i for i in range(len(images))
                 if i not in plans or plans[i].is_plain(tuple(self.base.imgsz))]
        out: list[Detections | None] = [None] * len(images)
        if plain:
            for i, dets in zip(plain, self.base.detect([images[i] for i in plain]),
                               strict=True):
                out[i] = dets
        # Other cameras: every network input of the tick, grouped by input size.
        groups: dict[tuple[int, int], list[np.ndarray]] = {}
        pending = []
        for i, plan in plans.items():
            if i in plain:
                continue
            crops, windows = _inputs(images[i], plan)
            group = groups.setdefault(plan.imgsz, [])
            pending.append((i, plan, windows, plan.imgsz, len(group)))
            group.extend(crops)
        results = {hw: self._detector(hw).detect(crops) for hw, crops in groups.items()}
        for i, plan, windows, hw, start in pending:
            parts = results[hw][start:start + len(windows)]
            out[i] = _assemble(parts, windows, plan, (images[i].shape[1], images[i].shape[0]),
                               self.views[ids[i]].merge_iou)
        return out  # type: ignore[return-value]
