"""Constant-velocity Kalman filter for image-plane person boxes.

State (8,): ``(cx, cy, a, h, vcx, vcy, va, vh)`` — box centre in pixels, aspect
ratio w/h, height in pixels, and their velocities per frame. Measurement (4,):
``xyah`` = ``(cx, cy, a, h)``. Process and measurement noise scale with the box
height, so a near (tall) person is allowed larger pixel errors than a far one —
the parametrisation popularised by deep_sort and kept by ByteTrack.

The filter itself is :class:`filterpy.kalman.KalmanFilter`; this module adds the
box-specific noise model, a per-track wrapper that reuses its noise buffers (no
per-frame allocation of filterpy objects), and a vectorised squared-Mahalanobis
gating distance for many tracks x many measurements.
"""

from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter
from scipy.stats import chi2

__all__ = [
    "CX",
    "CY",
    "ASPECT",
    "HEIGHT",
    "VCX",
    "VCY",
    "VASPECT",
    "VHEIGHT",
    "STATE_DIM",
    "MEASUREMENT_DIM",
    "CHI2_95",
    "BoxKalmanFilter",
    "squared_mahalanobis",
    "warp_xyah",
]

# Named state indices: nothing outside this module should use bare numbers.
CX, CY, ASPECT, HEIGHT, VCX, VCY, VASPECT, VHEIGHT = range(8)
STATE_DIM = 8
MEASUREMENT_DIM = 4

# 0.95 quantile of the chi-square distribution by degrees of freedom: the gate for a
# squared Mahalanobis distance (4 dof = full xyah, 2 dof = centre only).
CHI2_95: dict[int, float] = {dof: float(chi2.ppf(0.95, dof)) for dof in range(1, 10)}

_F = np.eye(STATE_DIM)
_F[[CX, CY, ASPECT, HEIGHT], [VCX, VCY, VASPECT, VHEIGHT]] = 1.0  # dt = one frame
_H = np.eye(MEASUREMENT_DIM, STATE_DIM)
_F.setflags(write=False)
_H.setflags(write=False)


class BoxKalmanFilter:
    """One track's constant-velocity filter over ``xyah`` boxes.

    Args:
        xyah: (4,) first measurement (centre x, centre y, aspect w/h, height; pixels).
        std_weight_position: Position noise std as a fraction of the box height.
        std_weight_velocity: Velocity noise std as a fraction of the box height.
    """

    __slots__ = ("_kf", "_q", "_r", "_wp", "_wv")

    def __init__(
        self,
        *,
        xyah: np.ndarray,
        std_weight_position: float = 1.0 / 20,
        std_weight_velocity: float = 1.0 / 160,
    ) -> None:
        self._wp = float(std_weight_position)
        self._wv = float(std_weight_velocity)
        kf = KalmanFilter(dim_x=STATE_DIM, dim_z=MEASUREMENT_DIM)
        kf.F = _F
        kf.H = _H
        z = np.asarray(xyah, dtype=np.float64).reshape(MEASUREMENT_DIM)
        kf.x = np.zeros((STATE_DIM, 1))
        kf.x[:MEASUREMENT_DIM, 0] = z
        h = z[HEIGHT]
        # Velocity is unknown at birth: start with a wide velocity uncertainty.
        std = np.array(
            [
                2 * self._wp * h,
                2 * self._wp * h,
                1e-2,
                2 * self._wp * h,
                10 * self._wv * h,
                10 * self._wv * h,
                1e-5,
                10 * self._wv * h,
            ]
        )
        kf.P = np.diag(std**2)
        self._kf = kf
        # Reused noise buffers: only their diagonals change from frame to frame.
        self._q = np.zeros((STATE_DIM, STATE_DIM))
        self._r = np.zeros((MEASUREMENT_DIM, MEASUREMENT_DIM))

    @property
    def mean(self) -> np.ndarray:
        """(8,) state mean (a view; do not modify)."""
        return self._kf.x[:, 0]

    @property
    def covariance(self) -> np.ndarray:
        """(8, 8) state covariance."""
        return self._kf.P

    @property
    def xyah(self) -> np.ndarray:
        """(4,) current box estimate as centre x, centre y, aspect w/h, height."""
        return self._kf.x[:MEASUREMENT_DIM, 0].copy()

    def predict(self, *, freeze_height_velocity: bool = False) -> None:
        """Advance one frame.

        Args:
            freeze_height_velocity: Zero the height velocity first. Used for lost
                tracks so an unobserved box does not grow or shrink without bound.
        """
        x = self._kf.x
        if freeze_height_velocity:
            x[VHEIGHT, 0] = 0.0
        h = x[HEIGHT, 0]
        pos = (self._wp * h) ** 2
        vel = (self._wv * h) ** 2
        q = self._q
        q[CX, CX] = q[CY, CY] = q[HEIGHT, HEIGHT] = pos
        q[ASPECT, ASPECT] = 1e-4
        q[VCX, VCX] = q[VCY, VCY] = q[VHEIGHT, VHEIGHT] = vel
        q[VASPECT, VASPECT] = 1e-10
        self._kf.predict(Q=q)

    def warp(self, matrix: np.ndarray) -> None:
        """Move the state into the next frame's pixels after the camera moved.

        Args:
            matrix: (2, 3) affine map from the previous frame's pixels to this one's
                (rotation and uniform scale ``A``, translation ``t``). The centre goes
                to ``A c + t``, the centre velocity to ``A v``, height and its velocity
                scale by ``sqrt(|det A|)``; the covariance is carried along.
        """
        a, t, scale = _affine(matrix)
        T = np.eye(STATE_DIM)
        T[CX:CY + 1, CX:CY + 1] = a
        T[VCX:VCY + 1, VCX:VCY + 1] = a
        T[HEIGHT, HEIGHT] = T[VHEIGHT, VHEIGHT] = scale
        kf = self._kf
        kf.x = T @ kf.x
        kf.x[[CX, CY], 0] += t
        kf.P = T @ kf.P @ T.T

    def _measurement_noise(self, std: np.ndarray | None = None) -> np.ndarray:
        h = self._kf.x[HEIGHT, 0]
        r = self._r
        if std is None:
            r[CX, CX] = r[CY, CY] = r[HEIGHT, HEIGHT] = (self._wp * h) ** 2
            r[ASPECT, ASPECT] = 1e-2
        else:
            r[CX, CX] = (std[CX] * h) ** 2
            r[CY, CY] = (std[CY] * h) ** 2
            r[HEIGHT, HEIGHT] = (std[HEIGHT] * h) ** 2
            r[ASPECT, ASPECT] = std[ASPECT] ** 2
        return r

    def update(self, xyah: np.ndarray, *, noise_std: np.ndarray | None = None) -> None:
        """Correct with a (4,) ``xyah`` measurement.

        Args:
            xyah: The measured box.
            noise_std: (4,) measurement noise std to use instead of the fixed model
                (cx, cy, h as fractions of the box height, aspect absolute), e.g.
                from ``pipeline.tracking.noise.BoxNoiseEstimator``.
        """
        z = np.asarray(xyah, dtype=np.float64).reshape(MEASUREMENT_DIM, 1)
        self._kf.update(z, R=self._measurement_noise(noise_std))

    def project(self) -> tuple[np.ndarray, np.ndarray]:
        """State distribution in measurement space.

        Returns:
            mean: (4,) predicted ``xyah``.
            covariance: (4, 4) innovation covariance ``H P H^T + R``.
        """
        p = self._kf.P
        cov = p[:MEASUREMENT_DIM, :MEASUREMENT_DIM] + self._measurement_noise()
        return self._kf.x[:MEASUREMENT_DIM, 0].copy(), cov

    def gating_distance(self, xyah: np.ndarray, *, only_position: bool = False) -> np.ndarray:
        """Squared Mahalanobis distance of (M, 4) measurements to this track: (M,)."""
        mean, cov = self.project()
        return squared_mahalanobis(mean[None], cov[None], xyah, only_position=only_position)[0]


def _affine(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(2, 3) affine map -> its linear part, translation and uniform scale."""
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    return m[:, :2], m[:, 2], float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def warp_xyah(xyah: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """A (4,) ``xyah`` box moved by a (2, 3) camera warp (as :meth:`BoxKalmanFilter.warp`
    moves a state): centre mapped, aspect kept, height scaled."""
    a, t, scale = _affine(matrix)
    return np.concatenate([a @ xyah[:2] + t, [xyah[ASPECT], xyah[HEIGHT] * scale]])


def squared_mahalanobis(
    means: np.ndarray,
    covariances: np.ndarray,
    xyah: np.ndarray,
    *,
    only_position: bool = False,
) -> np.ndarray:
    """Squared Mahalanobis distance of every measurement to every projected track.

    Compare with ``CHI2_95[4]`` (or ``CHI2_95[2]`` when ``only_position``) to gate.

    Args:
        means: (N, 4) projected track means (``xyah``).
        covariances: (N, 4, 4) projected covariances.
        xyah: (M, 4) measurements.
        only_position: Use only the centre (cx, cy), i.e. 2 degrees of freedom.

    Returns:
        float64 (N, M) squared distances.
    """
    means = np.asarray(means, dtype=np.float64).reshape(-1, MEASUREMENT_DIM)
    covariances = np.asarray(covariances, dtype=np.float64).reshape(
        -1, MEASUREMENT_DIM, MEASUREMENT_DIM
    )
    z = np.asarray(xyah, dtype=np.float64).reshape(-1, MEASUREMENT_DIM)
    n, m = means.shape[0], z.shape[0]
    if n == 0 or m == 0:
        return np.zeros((n, m))
    dims = [CX, CY] if only_position else list(range(MEASUREMENT_DIM))
    cov = covariances[:, dims][:, :, dims]
    diff = z[None, :, dims] - means[:, None, dims]  # (N, M, d)
    chol = np.linalg.cholesky(cov)  # (N, d, d), lower
    # Solving L y = d^T for all tracks at once; |y|^2 is the squared distance.
    y = np.linalg.solve(chol, np.swapaxes(diff, 1, 2))  # (N, d, M)
    return np.einsum("ndm,ndm->nm", y, y)
