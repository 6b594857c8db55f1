"""Global camera motion between consecutive frames, for the tracker (``compensate``).

A camera that pans, shakes or zooms moves every box in the image at once; the Kalman
filter, which models each person's own motion, takes it for a sudden change of velocity
of everybody and its predictions miss. BoT-SORT removes it first (global motion
compensation); this module does the same with sparse optical flow:

1. the frame is converted to grey and scaled down to ``width`` pixels;
2. corners (``cv2.goodFeaturesToTrack``) are taken on the previous frame, away from
   that frame's detections (people move by themselves);
3. they are followed into this frame (pyramidal Lucas-Kanade, ``cv2.calcOpticalFlowPyrLK``);
4. a rotation + uniform scale + translation is fitted to the pairs with RANSAC
   (``cv2.estimateAffinePartial2D``) and brought back to full-resolution pixels.

``mode``: ``on`` estimates every frame; ``auto`` checks once every ``check_every_s``
seconds and estimates every frame for ``hold_s`` seconds after a check found the camera
moving (an image corner displaced by more than ``min_shift_px``); ``off`` never. A
static camera in ``auto`` costs one grey downscale per frame and one estimate a second.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.types import DEFAULT_FPS, seconds_to_frames

__all__ = ["MOTION_MODES", "CameraMotion"]

MOTION_MODES = ("off", "on", "auto")

_MIN_POINTS = 12  # fewer tracked corners than this: no estimate (blank or blurred view)


class CameraMotion:
    """One camera's frame-to-frame motion estimate.

    Args:
        mode: "on", "auto" or "off" (see the module docstring).
        width: Width in pixels of the grey image the flow runs on.
        max_corners: Corners followed per frame.
        check_every_s: ``auto``: seconds between two checks while the camera is still.
        hold_s: ``auto``: seconds estimated after a check found motion (each estimate
            that finds motion extends it).
        fps: The camera's frame rate (``DEFAULT_FPS`` when None; ``set_fps``).
        min_shift_px: ``auto``: displacement (full-resolution pixels, at the image
            corners) above which the camera counts as moving.
    """

    def __init__(self, *, mode: str = "auto", width: int = 320, max_corners: int = 200,
                 check_every_s: float = 1.0, hold_s: float = 5.0,
                 min_shift_px: float = 1.0, fps: float | None = None) -> None:
        if mode not in MOTION_MODES:
            raise ValueError(f"unknown camera motion mode {mode!r}; choose one of "
                             f"{', '.join(MOTION_MODES)}")
        if width < 32 or max_corners < _MIN_POINTS or not check_every_s > 0 or hold_s < 0:
            raise ValueError("need width >= 32, max_corners >= 12, check_every_s > 0 and "
                             f"hold_s >= 0, got {width}, {max_corners}, {check_every_s}, "
                             f"{hold_s}")
        self.mode = mode
        self.width = int(width)
        self.max_corners = int(max_corners)
        self.check_every_s, self.hold_s = float(check_every_s), float(hold_s)
        self.min_shift_px = float(min_shift_px)
        self.set_fps(DEFAULT_FPS if fps is None else fps)
        self.estimates = 0  # frames on which the flow ran
        self.moving_frames = 0  # frames whose estimate was handed on (camera moving)
        self.reset()

    def set_fps(self, fps: float) -> None:
        """Take the camera's frame rate (the check interval and hold become frames)."""
        self.check_every = max(1, seconds_to_frames(self.check_every_s, fps))
        self.hold_frames = max(1, seconds_to_frames(self.hold_s, fps))

    def reset(self) -> None:
        """Forget the previous frame (a new source, or frames were lost)."""
        self._previous: np.ndarray | None = None
        self._previous_boxes = np.zeros((0, 4), np.float32)
        self._since_check = 0
        self._hold = 0

    def __call__(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray | None:
        """This frame's image and detections -> the (2, 3) affine map from the previous
        frame's pixels to this one's, or None (no motion to compensate, or no estimate).
        """
        if self.mode == "off":
            return None
        due = self.mode == "on" or self._hold > 0
        if not due:  # auto, camera still: only a check's frame and the one before count
            self._since_check += 1
            if self._since_check < self.check_every - 1:
                self._previous = None
                return None
            due = self._since_check >= self.check_every
            if due:
                self._since_check = 0
        grey, factor = self._grey(image_bgr)
        previous, previous_boxes = self._previous, self._previous_boxes
        self._previous = grey
        self._previous_boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4) * factor
        if not due or previous is None or previous.shape != grey.shape:
            return None
        warp = self._estimate(previous, previous_boxes, grey, factor)
        if warp is None:
            return None
        if self.mode == "auto":
            if self._shift(warp, image_bgr.shape) <= self.min_shift_px:
                self._hold = max(self._hold - 1, 0)
                return None
            self._hold = self.hold_frames
        self.moving_frames += 1
        return warp

    def _grey(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = image_bgr.shape[:2]
        factor = min(1.0, self.width / w)
        # Bilinear: a tenth of INTER_AREA's cost here, and the flow does not need more.
        small = cv2.resize(image_bgr, (max(1, round(w * factor)), max(1, round(h * factor))),
                           interpolation=cv2.INTER_LINEAR) if factor < 1.0 else image_bgr
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), factor

    def _estimate(self, previous: np.ndarray, boxes: np.ndarray, grey: np.ndarray,
                  factor: float) -> np.ndarray | None:
        self.estimates += 1
        mask = np.full(previous.shape, 255, np.uint8)
        for x0, y0, x1, y1 in boxes.astype(int):
            mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 0
        corners = cv2.goodFeaturesToTrack(previous, maxCorners=self.max_corners,
                                          qualityLevel=0.01, minDistance=6, blockSize=3,
                                          mask=mask)
        if corners is None or len(corners) < _MIN_POINTS:
            return None
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, grey, corners, None,
                                                    winSize=(15, 15), maxLevel=3)
        ok = status.reshape(-1) == 1
        if ok.sum() < _MIN_POINTS:
            return None
        warp, inliers = cv2.estimateAffinePartial2D(
            corners[ok].reshape(-1, 2), moved[ok].reshape(-1, 2), method=cv2.RANSAC,
            ransacReprojThreshold=1.0, maxIters=500, confidence=0.99)
        if warp is None or inliers is None or int(inliers.sum()) < _MIN_POINTS:
            return None
        warp = warp.astype(np.float64)
        warp[:, 2] /= factor  # translation back to full-resolution pixels
        return warp

    @staticmethod
    def _shift(warp: np.ndarray, shape: tuple[int, ...]) -> float:
        """Largest displacement the map gives an image corner (full-resolution pixels)."""
        h, w = shape[:2]
        corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
        moved = corners @ warp[:, :2].T + warp[:, 2]
        return float(np.abs(moved - corners).max())
