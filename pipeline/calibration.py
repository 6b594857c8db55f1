"""Ground-plane calibration of a camera: image pixels -> metres on a flat floor.

A camera's calibration is one 3x3 homography ``H`` from undistorted image pixels
``(u, v, 1)`` to homogeneous floor points ``(X, Y, W)``, plus the lens model to undistort
pixels first when there is one. Two ways to give it, per camera, in the run config::

    cameras:
      - id: cam1
        source: cam1.mp4
        calibration:          # OpenCV FileStorage XML files (WILDTRACK's layout)
          intrinsics: calib/intr_cam1.xml   # camera_matrix, distortion_coefficients
          extrinsics: calib/extr_cam1.xml   # rvec, tvec: floor (Z = 0) -> camera
          unit: cm            # the unit of tvec (m, cm or mm); positions come out in metres
      - id: cam2
        source: cam2.mp4
        calibration:          # or: >= 4 floor points seen in the image
          points:             # [u_px, v_px, x_m, y_m]
            - [102, 530, 0.0, 0.0]
            - [860, 541, 6.0, 0.0]
            - [655, 260, 6.0, 12.0]
            - [301, 255, 0.0, 12.0]

``W`` is kept positive for floor points in front of the camera; pixels with ``W <= 0``
lie on or above the horizon line ``H[2] . (u, v, 1) = 0`` and have no floor position
(NaN). :meth:`GroundCalibration.check_image` refuses a calibration whose horizon crosses
the lower half of the image, where people's feet are, or whose lower half would cover
more than a kilometre of floor: that is a wrong calibration (the points' columns swapped,
a wrong unit), not a camera looking at the sky.

A box's floor position is its foot point, the bottom centre of the box
(:meth:`GroundCalibration.foot_points`); a box whose bottom edge touches the image's
bottom border hides the feet, so it has none.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FloorPlan", "FloorPositions", "GroundCalibration", "UNITS", "calibration_from_config",
           "homography_from_points", "read_opencv_xml"]

logger = logging.getLogger(__name__)

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
"""Units an extrinsics file's translation may be in, as metres per unit."""

# Smallest / largest singular value of the (normalised) DLT system's null space gap below
# which the points do not fix one homography (collinear or repeated points).
_DEGENERATE = 1e-6
# Widest floor extent the lower half of a camera's image may cover (metres).
_MAX_SPAN_M = 1000.0
# Reprojection error of the given points (metres, RMS) above which a warning is logged.
_RESIDUAL_WARN_M = 0.25


def _normaliser(points: np.ndarray) -> np.ndarray:
    """Similarity moving ``points`` (N, 2) to mean 0 and mean distance sqrt(2)."""
    centre = points.mean(axis=0)
    spread = np.linalg.norm(points - centre, axis=1).mean()
    scale = np.sqrt(2.0) / spread if spread > 0 else 1.0
    return np.array([[scale, 0, -scale * centre[0]], [0, scale, -scale * centre[1]],
                     [0, 0, 1.0]])


def homography_from_points(image_px: np.ndarray, floor_m: np.ndarray) -> np.ndarray:
    """Least-squares homography (normalised DLT) mapping ``image_px`` to ``floor_m``.

    Args:
        image_px: (N, 2) pixels, N >= 4.
        floor_m: (N, 2) floor points in metres, row aligned.

    Returns:
        (3, 3) float64 H with ``H @ (u, v, 1) ~ (x, y, 1)``, scaled so that ``W > 0`` at
        the given points.

    Raises:
        ValueError: fewer than 4 points, non-finite values, points that do not fix one
            homography (three or more of four collinear, repeated points), or points
            on both sides of the horizon the fit implies.
    """
    src = np.asarray(image_px, np.float64).reshape(-1, 2)
    dst = np.asarray(floor_m, np.float64).reshape(-1, 2)
    if src.shape[0] < 4 or src.shape != dst.shape:
        raise ValueError(f"needs >= 4 point pairs [u_px, v_px, x_m, y_m], got {src.shape[0]}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("points must be finite numbers")
    t_src, t_dst = _normaliser(src), _normaliser(dst)
    a = (np.column_stack([src, np.ones(len(src))]) @ t_src.T)[:, :2]
    b = (np.column_stack([dst, np.ones(len(dst))]) @ t_dst.T)[:, :2]
    rows = []
    for (u, v), (x, y) in zip(a, b, strict=True):
        rows.append([u, v, 1, 0, 0, 0, -x * u, -x * v, -x])
        rows.append([0, 0, 0, u, v, 1, -y * u, -y * v, -y])
    _, sv, vt = np.linalg.svd(np.asarray(rows))
    # A unique solution needs rank 8 (one null direction, the homography): the 8th
    # largest singular value must stay clear of zero.
    if sv[7] / sv[0] < _DEGENERATE:
        raise ValueError("the points do not fix a homography (collinear or repeated "
                         "points): give >= 4 floor points, no three on one line")
    h = np.linalg.inv(t_dst) @ vt[-1].reshape(3, 3) @ t_src
    if abs(np.linalg.det(h)) < 1e-12 * np.abs(h).max() ** 3:
        raise ValueError("the points give a degenerate homography (no three may be on one "
                         "line)")
    w = np.column_stack([src, np.ones(len(src))]) @ h[2]
    if not (np.all(w > 0) or np.all(w < 0)):
        raise ValueError("the points lie on both sides of the horizon the fit implies: check "
                         "that each is [u_px, v_px, x_m, y_m] and on the floor")
    return np.sign(w[0]) * h / np.abs(h).max()


def read_opencv_xml(path: Path, tags: Sequence[str]) -> dict[str, np.ndarray]:
    """Numbers of the named nodes of an OpenCV FileStorage XML file (a matrix node's
    ``<data>``, or the node's own text), flat float64.

    Raises:
        ValueError: the file is missing or not XML, a node is missing or not numbers.
    """
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise ValueError(f"file not found: {path}") from None
    except (ET.ParseError, OSError) as exc:
        raise ValueError(f"{path}: not an OpenCV FileStorage XML file ({exc})") from None
    out = {}
    for tag in tags:
        node = root.find(tag)
        if node is None:
            raise ValueError(f"{path}: no <{tag}> element")
        data = node.find("data")
        try:
            out[tag] = np.array(((data if data is not None else node).text or "").split(),
                                dtype=np.float64)
        except ValueError:
            raise ValueError(f"{path}: <{tag}> does not hold numbers") from None
    return out


@dataclass(frozen=True)
class GroundCalibration:
    """One camera's image -> floor mapping (see the module docstring).

    Attributes:
        camera_id: The camera.
        homography: (3, 3) undistorted pixels -> floor (X, Y, W), ``W > 0`` in front.
        camera_matrix: (3, 3) intrinsics when a lens model is known (to undistort).
        dist_coeffs: OpenCV distortion coefficients (None or all zero = none).
    """

    camera_id: str
    homography: np.ndarray
    camera_matrix: np.ndarray | None = None
    dist_coeffs: np.ndarray | None = None

    @classmethod
    def from_points(cls, camera_id: str, points: Sequence[Sequence[float]]) -> GroundCalibration:
        """From ``[[u_px, v_px, x_m, y_m], ...]`` (>= 4 floor points).

        Raises:
            ValueError: malformed or degenerate points (see :func:`homography_from_points`).
        """
        try:
            table = np.asarray(points, np.float64)
        except (TypeError, ValueError):
            raise ValueError("points must be a list of [u_px, v_px, x_m, y_m]") from None
        if table.ndim != 2 or table.shape[1] != 4:
            raise ValueError(f"points must be a list of [u_px, v_px, x_m, y_m], got shape "
                             f"{table.shape}")
        h = homography_from_points(table[:, :2], table[:, 2:])
        calibration = cls(camera_id=camera_id, homography=h)
        residual = np.linalg.norm(calibration.to_floor(table[:, :2]) - table[:, 2:], axis=1)
        rms = float(np.sqrt(np.mean(residual ** 2)))
        if rms > _RESIDUAL_WARN_M:
            logger.warning("camera %r: the calibration points fit a flat floor only to "
                           "%.2f m RMS (worst point %d, %.2f m): check them", camera_id, rms,
                           int(residual.argmax()), float(residual.max()))
        return calibration

    @classmethod
    def from_opencv(cls, camera_id: str, intrinsics: Path | str, extrinsics: Path | str, *,
                    unit: str = "m") -> GroundCalibration:
        """From OpenCV FileStorage XML files: ``camera_matrix`` (+ optional
        ``distortion_coefficients``) and ``rvec``, ``tvec`` (floor -> camera, the floor
        is Z = 0; ``tvec`` in ``unit``).

        Raises:
            ValueError: a missing or malformed file, an unknown unit, or a camera that
                does not look at the floor.
        """
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
        intr = read_opencv_xml(Path(intrinsics), ["camera_matrix"])
        try:
            dist = read_opencv_xml(Path(intrinsics), ["distortion_coefficients"])[
                "distortion_coefficients"]
        except ValueError:
            dist = np.zeros(0)
        extr = read_opencv_xml(Path(extrinsics), ["rvec", "tvec"])
        k, rvec, tvec = intr["camera_matrix"], extr["rvec"], extr["tvec"]
        if k.size != 9 or rvec.size != 3 or tvec.size != 3:
            raise ValueError(f"{intrinsics} / {extrinsics}: expected a 3x3 camera_matrix and "
                             f"3 numbers each in rvec and tvec, got {k.size}, {rvec.size}, "
                             f"{tvec.size}")
        if dist.size not in (0, 4, 5, 8, 12, 14):
            raise ValueError(f"{intrinsics}: distortion_coefficients must have 4, 5, 8, 12 or "
                             f"14 numbers, got {dist.size}")
        import cv2

        rotation = cv2.Rodrigues(rvec.reshape(3, 1))[0]
        k = k.reshape(3, 3)
        to_image = k @ np.column_stack([rotation[:, 0], rotation[:, 1],
                                        tvec * UNITS[unit]])
        if abs(np.linalg.det(to_image)) < 1e-12:
            raise ValueError(f"{extrinsics}: the camera centre lies on the floor plane (Z = 0), "
                             "so the floor is seen edge on")
        # K [r1 r2 t] (X, Y, 1) = depth * (u, v, 1): the inverse gives W = 1 / depth,
        # positive exactly for floor points in front of the camera.
        return cls(camera_id=camera_id, homography=np.linalg.inv(to_image), camera_matrix=k,
                   dist_coeffs=dist if np.any(dist) else None)

    def _undistort(self, uv: np.ndarray) -> np.ndarray:
        if self.dist_coeffs is None or self.camera_matrix is None or not len(uv):
            return uv
        import cv2

        return cv2.undistortPoints(uv.reshape(-1, 1, 2), self.camera_matrix, self.dist_coeffs,
                                   P=self.camera_matrix).reshape(-1, 2)

    def to_floor(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) -> floor points (N, 2) metres; NaN on or above the horizon."""
        pts = self._undistort(np.asarray(uv, np.float64).reshape(-1, 2))
        homo = np.column_stack([pts, np.ones(len(pts))]) @ self.homography.T
        out = np.full((len(pts), 2), np.nan)
        ok = homo[:, 2] > 1e-12
        out[ok] = homo[ok, :2] / homo[ok, 2:3]
        return out

    def foot_points(self, xyxy: np.ndarray, size_wh: tuple[int, int], *,
                    border_px: float = 2.0) -> np.ndarray:
        """Floor positions (N, 2) metres of boxes' foot points (bottom centre).

        NaN where the box's bottom edge is within ``border_px`` of the image's bottom
        (the feet are out of view) or the point is on or above the horizon.
        """
        box = np.asarray(xyxy, np.float64).reshape(-1, 4)
        out = self.to_floor(np.column_stack([(box[:, 0] + box[:, 2]) / 2.0, box[:, 3]]))
        out[box[:, 3] >= size_wh[1] - border_px] = np.nan
        return out

    def check_image(self, size_wh: tuple[int, int]) -> None:
        """Refuse a calibration whose horizon crosses the lower half of the image.

        Raises:
            ValueError: the lower half of a ``size_wh`` image holds pixels on or above the
                horizon (no person's feet can be there on a flat floor below the camera),
                or it would cover more than a kilometre of floor (pixel and floor columns
                swapped, a wrong unit).
        """
        width, height = size_wh
        if width <= 0 or height <= 0:
            return
        corners = np.array([[0, height / 2], [width - 1, height / 2], [0, height - 1],
                            [width - 1, height - 1]], np.float64)
        floor = self.to_floor(corners)
        hint = ("the calibration does not fit this camera (points given as [x_m, y_m, u_px, "
                "v_px]? wrong files or unit?)")
        if np.isnan(floor).any():
            raise ValueError(f"the horizon of this calibration crosses the lower half of the "
                             f"{width}x{height} image, where people's feet are: {hint}")
        span = float(np.linalg.norm(floor[:, None] - floor[None], axis=2).max())
        if span > _MAX_SPAN_M:
            raise ValueError(f"the lower half of the {width}x{height} image would span "
                             f"{span:.0f} m of floor (more than {_MAX_SPAN_M:.0f} m): {hint}")


def calibration_from_config(camera_id: str, data: Mapping[str, Any]) -> GroundCalibration:
    """A camera's ``calibration`` mapping -> :class:`GroundCalibration`.

    Keys: ``points`` (list of ``[u_px, v_px, x_m, y_m]``), or ``intrinsics`` +
    ``extrinsics`` (file paths, already resolved) with optional ``unit``.

    Raises:
        ValueError: unknown keys, both or neither form, or what the constructors raise.
    """
    keys = set(data)
    allowed = {"points", "intrinsics", "extrinsics", "unit"}
    if keys - allowed:
        raise ValueError(f"unknown key(s) {', '.join(sorted(map(repr, keys - allowed)))}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    if "points" in keys:
        if keys & {"intrinsics", "extrinsics", "unit"}:
            raise ValueError("give either points or intrinsics + extrinsics, not both")
        return GroundCalibration.from_points(camera_id, data["points"])
    if not {"intrinsics", "extrinsics"} <= keys:
        raise ValueError("needs points: [[u_px, v_px, x_m, y_m], ...] (>= 4), or "
                         "intrinsics and extrinsics (OpenCV XML files)")
    return GroundCalibration.from_opencv(camera_id, data["intrinsics"], data["extrinsics"],
                                         unit=str(data.get("unit", "m")))


class FloorPositions:
    """Every calibrated camera's box -> floor mapping for one run.

    Args:
        calibrations: ``camera_id -> GroundCalibration`` (cameras left out have none).
        border_px: See :meth:`GroundCalibration.foot_points`.
    """

    def __init__(self, calibrations: Mapping[str, GroundCalibration], *,
                 border_px: float = 2.0) -> None:
        self.calibrations = dict(calibrations)
        self.border_px = border_px
        self.sizes: dict[str, tuple[int, int]] = {}

    def check(self, camera_id: str, size_wh: tuple[int, int]) -> None:
        """Check ``camera_id``'s calibration against its image size (once per size).

        Raises:
            ValueError: see :meth:`GroundCalibration.check_image` (message names the camera).
        """
        calibration = self.calibrations.get(camera_id)
        if calibration is None or self.sizes.get(camera_id) == tuple(size_wh) or \
                min(size_wh) <= 0:
            return
        try:
            calibration.check_image(size_wh)
        except ValueError as error:
            raise ValueError(f"camera {camera_id!r}: calibration: {error}") from None
        self.sizes[camera_id] = (int(size_wh[0]), int(size_wh[1]))

    def boxes(self, camera_id: str, xyxy: np.ndarray,
              size_wh: tuple[int, int] | None = None) -> np.ndarray | None:
        """Floor points (N, 2) of a camera's boxes (NaN where unknown); None when the
        camera has no calibration. ``size_wh`` defaults to the last size checked."""
        calibration = self.calibrations.get(camera_id)
        if calibration is None:
            return None
        if size_wh is not None:
            self.check(camera_id, size_wh)
        size = size_wh if size_wh is not None else self.sizes.get(camera_id, (0, 0))
        return calibration.foot_points(xyxy, size, border_px=self.border_px)


@dataclass(frozen=True)
class FloorPlan:
    """A floor-plan image placed on the floor's metric frame.

    A floor point (x, y) metres is drawn at image column ``(x - origin_m[0]) * px_per_m``
    and row ``(y - origin_m[1]) * px_per_m`` (``y_up: false``, y grows down the image) or
    ``(origin_m[1] - y) * px_per_m`` (``y_up: true``).

    Attributes:
        image: The plan (PNG or JPEG).
        origin_m: Floor point at the image's top-left corner, metres.
        px_per_m: Image pixels per metre.
        y_up: Whether floor y grows up the image.
    """

    image: str
    origin_m: tuple[float, float] = (0.0, 0.0)
    px_per_m: float = 10.0
    y_up: bool = False

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> FloorPlan:
        """From ``output.floor_plan``; ValueError names the bad key."""
        allowed = {"image", "origin_m", "px_per_m", "y_up"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(map(repr, unknown)))}; "
                             f"allowed: {', '.join(sorted(allowed))}")
        if "image" not in data:
            raise ValueError("image: the floor-plan picture (PNG or JPEG) is required")
        try:
            origin = tuple(float(v) for v in data.get("origin_m", (0.0, 0.0)))
            scale = float(data.get("px_per_m", 10.0))
        except (TypeError, ValueError):
            raise ValueError("origin_m must be [x, y] metres and px_per_m a number") from None
        if len(origin) != 2 or not scale > 0:
            raise ValueError(f"origin_m must be [x, y] metres and px_per_m > 0, got {origin}, "
                             f"{scale}")
        image = Path(str(data["image"]))
        if not image.is_file():
            raise ValueError(f"image: file not found: {image}")
        return cls(image=str(image), origin_m=(origin[0], origin[1]), px_per_m=scale,
                   y_up=bool(data.get("y_up", False)))
