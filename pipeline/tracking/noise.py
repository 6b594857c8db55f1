"""Online estimate of a detector's box jitter, for the tracker's Kalman filter.

How much a detector's boxes wobble is its own: boxes replayed from ground truth do not
move at all, a small fast detector's move by several percent of the person's height
from frame to frame, misaligned crops jump further. The Kalman filter's measurement
noise ``R`` decides how far a track trusts each new box, both for its predictions
(association) and for the box it reports, and a fixed ``R`` suits one detector only.

The estimate comes from the tracks themselves. For boxes of one track in consecutive
frames, the second difference ``d_t = z_t - 2 z_(t-1) + z_(t-2)`` removes position and
constant velocity. If the true box moves with a randomly changing velocity (increments
of variance ``q`` per frame) and the detector adds white noise of variance ``r``, then

    Var(d_t) = q + 6 r        Cov(d_t, d_(t-1)) = -4 r

so ``r = -Cov(d_t, d_(t-1)) / 4`` measures the detector's jitter whatever the people's
own acceleration (large at a low frame rate; the variance alone would count it as
noise). Centre and height are taken relative to the box height (the filter's noise
scales with it), the aspect ratio as it is. Values beyond three robust deviations (a
cut-off box, a wrong match) are clipped before the products.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BoxNoiseEstimator", "one_sigma_iou"]

_MAD_TO_STD = 1.0 / 0.6745  # std = MAD / 0.6745 for a Gaussian
_CLIP_DEVIATIONS = 3.0
# Cov(d_t, d_(t-1)) = -4 r for white measurement noise of variance r.
_LAG_ONE_FACTOR = 4.0


class BoxNoiseEstimator:
    """Running, robust estimate of the noise std of ``xyah`` box measurements.

    Args:
        window: Samples (pairs of consecutive second differences) looked back over.
        min_samples: Samples needed before there is an estimate (:attr:`ready`).
        floor: Smallest std returned (exact boxes still get a little noise, so the
            filter stays well conditioned), relative to the height for cx, cy, h.
    """

    def __init__(self, *, window: int = 2000, min_samples: int = 200,
                 floor: float = 1e-3) -> None:
        if min_samples < 1 or window < min_samples:
            raise ValueError(f"need 1 <= min_samples <= window, got {min_samples}, {window}")
        self.min_samples = int(min_samples)
        self.floor = float(floor)
        # A ring of the last ``window`` samples: (d_(t-1), d_t) per track and frame.
        self._pairs = np.zeros((int(window), 2, 4))
        self._aspects = np.zeros(int(window))  # the newest box's aspect, per sample
        self._count = 0  # samples ever added since reset
        self._std: np.ndarray | None = None
        self._aspect: float | None = None

    def reset(self) -> None:
        """Forget every sample (a new source, or a camera that reconnected)."""
        self._count = 0
        self._std = None
        self._aspect = None

    @property
    def ready(self) -> bool:
        """Whether enough samples have arrived for an estimate."""
        return self._std is not None

    @property
    def std(self) -> np.ndarray | None:
        """(4,) noise std of ``(cx, cy, aspect, h)``: cx, cy and h as fractions of the
        box height, aspect absolute; None before :attr:`ready`."""
        return self._std

    @property
    def aspect(self) -> float | None:
        """Median aspect ratio (width / height) of the measured boxes; None before
        :attr:`ready`."""
        return self._aspect

    def observe(self, boxes: np.ndarray) -> None:
        """Add tracks' last four ``xyah`` boxes, measured in consecutive frames:
        (N, 4, 4), oldest first. Call :meth:`refresh` to update the estimate."""
        z = np.asarray(boxes, np.float64).reshape(-1, 4, 4)
        if len(z) == 0:
            return
        d = z[:, 2:] - 2.0 * z[:, 1:3] + z[:, :2]  # (N, 2, 4): d_(t-1), d_t
        scale = np.ones_like(d)
        scale[:, :, [0, 1, 3]] = np.maximum(z[:, 2, 3], 1.0)[:, None, None]
        d = (d / scale)[-len(self._pairs):]
        rows = (self._count + np.arange(len(d))) % len(self._pairs)
        self._pairs[rows] = d
        self._aspects[rows] = z[-len(d):, 3, 2]
        self._count += len(d)

    def refresh(self) -> np.ndarray | None:
        """Recompute the estimate from the window; returns :attr:`std`."""
        if self._count >= self.min_samples:
            d = self._pairs[:min(self._count, len(self._pairs))]
            limit = _CLIP_DEVIATIONS * _MAD_TO_STD * np.median(np.abs(d), axis=(0, 1))
            d = np.clip(d, -limit, limit)
            r = np.maximum(-np.mean(d[:, 0] * d[:, 1], axis=0) / _LAG_ONE_FACTOR, 0.0)
            self._std = np.maximum(np.sqrt(r), self.floor)
            self._aspect = float(np.median(self._aspects[:len(d)]))
        return self._std


def one_sigma_iou(std: np.ndarray, aspect: float) -> float:
    """IoU of a box of this ``aspect`` (width / height) with the same box measured one
    standard deviation off in every component of ``std`` (:attr:`BoxNoiseEstimator.std`:
    centre moved by ``std[0]`` and ``std[1]`` box heights, aspect larger by ``std[2]``,
    height by ``std[3]`` of itself): the overlap a correct match keeps under the
    detector's own jitter. 1 for exact boxes, 0.86 for MOT17 boxes with a centre
    jitter of 3% of their size, 0.58 at 12%.
    """
    sx, sy, sa, sh = (float(v) for v in np.asarray(std, np.float64))
    w, h = float(aspect), 1.0
    h2 = h * (1.0 + sh)
    w2 = (w + sa) * h2
    ox = max(0.0, min(w / 2, sx + w2 / 2) - max(-w / 2, sx - w2 / 2))
    oy = max(0.0, min(h / 2, sy + h2 / 2) - max(-h / 2, sy - h2 / 2))
    inter = ox * oy
    return inter / (w * h + w2 * h2 - inter)
