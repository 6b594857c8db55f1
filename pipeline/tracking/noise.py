"""Online estimate of a detector's box jitter, for the tracker's Kalman filter.

How much a detector's boxes wobble is its own: boxes replayed from ground truth do not
move at all, a small fast detector's move by several percent of the person's height
from frame to frame, misaligned crops jump further. The Kalman filter's measurement
noise ``R`` decides how far a track trusts each new box, both for its predictions
(association) and for the box it reports, and a fixed ``R`` suits one detector only.

The estimate comes from the tracks themselves. For three boxes of one track in
consecutive frames, the second difference ``d = z_t - 2 z_(t-1) + z_(t-2)`` removes
position and constant velocity; white measurement noise of variance ``s^2`` gives it
variance ``6 s^2`` (the person's own acceleration adds a little, so this errs high).
Centre and height are taken relative to the box height (the filter's noise scales with
it), the aspect ratio as it is. A median over a window of recent samples, with the
Gaussian median-to-variance factor, keeps the few wrong matches and cut-off boxes from
inflating it.
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["BoxNoiseEstimator"]

# median(x^2) = 0.4549 sigma^2 for zero-mean Gaussian x.
_MEDIAN_CHI2_1 = 0.454936
# Var(z_t - 2 z_(t-1) + z_(t-2)) = (1 + 4 + 1) s^2 for white noise of variance s^2.
_SECOND_DIFFERENCE_VAR = 6.0


class BoxNoiseEstimator:
    """Running, robust estimate of the noise std of ``xyah`` box measurements.

    Args:
        window: Samples (second differences) the estimate looks back over.
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
        self._squares: deque[np.ndarray] = deque(maxlen=int(window))
        self._std: np.ndarray | None = None

    def reset(self) -> None:
        """Forget every sample (a new source, or a camera that reconnected)."""
        self._squares.clear()
        self._std = None

    @property
    def ready(self) -> bool:
        """Whether enough samples have arrived for an estimate."""
        return self._std is not None

    @property
    def std(self) -> np.ndarray | None:
        """(4,) noise std of ``(cx, cy, aspect, h)``: cx, cy and h as fractions of the
        box height, aspect absolute; None before :attr:`ready`."""
        return self._std

    def observe(self, second_differences: np.ndarray, heights: np.ndarray) -> None:
        """Add (N, 4) second differences of ``xyah`` boxes and the (N,) heights of
        their middle boxes. Call :meth:`refresh` to update the estimate."""
        d = np.asarray(second_differences, np.float64).reshape(-1, 4)
        if len(d) == 0:
            return
        scale = np.ones_like(d)
        scale[:, [0, 1, 3]] = np.maximum(np.asarray(heights, np.float64), 1.0)[:, None]
        self._squares.extend((d / scale) ** 2)

    def refresh(self) -> np.ndarray | None:
        """Recompute the estimate from the window; returns :attr:`std`."""
        if len(self._squares) >= self.min_samples:
            var = np.median(np.asarray(self._squares), axis=0) / _MEDIAN_CHI2_1
            self._std = np.maximum(np.sqrt(var / _SECOND_DIFFERENCE_VAR), self.floor)
        return self._std
