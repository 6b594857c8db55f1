"""Detection scores put on the tracker's scale from their running distribution.

The tracker's thresholds (``high_thresh`` 0.4, ``low_thresh`` 0.1, ``new_track_thresh``
0.5) were chosen for detectors whose certain boxes score near 1. Another detector's
certain boxes may score 0.3 (MOTChallenge's public ACF boxes read as probabilities), or
sit on a shifted scale; ``score_scale`` fixes a scale the user knows, this module one
nobody declared.

:class:`ScoreAdapter` keeps the scores of the camera's last ``window`` frames and maps
each new score linearly so that two quantiles of that window land on two reference
values: the scores of the reference distribution at the same quantiles. The map is
affine in the scores, so a detector whose scores are an affine function of another's
(rescaled, shifted, squeezed toward a value) gets the same mapped scores, hence the same
tracks, once the windows hold the same boxes. It reads the distribution only: a
detector that fires on much more (or less) clutter than the reference moves the
quantiles, which is why the quantiles sit where the reference's true and false boxes
are both present and the map changes only after enough scores (``min_scores``).

``auto`` (the tracker's default) uses the map only where the fixed thresholds would
track nothing: while fewer than ``AUTO_ENGAGE`` (1%) of the camera's last scores (at
least ``AUTO_MIN_SCORES``) reach the tracker's ``new_track_thresh``, so that no box
could start a track; it lets go above ``AUTO_RELEASE`` (5%). A looser rule was tried
and dropped: the upper quartile separates the noise study's squeezed or rescaled scores
(0.32) from the project's YOLO on PETS09 (0.81), but the same YOLO on the sample's
distant people (camera 2) scores as low, and mapping it there turned clutter into
tracks (183 tracklets instead of about 100). A detector's distribution depends on the
scene as much as on the detector, so ``auto`` acts only when there is nothing to lose.

Reference (``REFERENCE``): the quartiles of the project's YOLO detector on PETS09-S2L1
(0.53, 0.81) and of the MOT17 noise study's level-2 detections (0.56, 0.91), the scales
the thresholds were tuned on, averaged (``benchmarks/tracker_scores.py``).
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["AUTO_ENGAGE", "AUTO_MIN_SCORES", "AUTO_RELEASE", "QUANTILES", "REFERENCE",
           "ScoreAdapter"]

QUANTILES = (0.25, 0.75)
"""The window quantiles that are mapped onto ``REFERENCE``."""

REFERENCE = (0.55, 0.86)
"""The tracker's scale at ``QUANTILES`` (see the module docstring)."""

AUTO_MIN_SCORES = 500
AUTO_ENGAGE = 0.01
AUTO_RELEASE = 0.05


class ScoreAdapter:
    """Running affine map of one camera's detection scores onto the tracker's scale.

    Args:
        window: Frames of scores kept (the camera's last ``window`` frames).
        min_scores: Scores the window needs before it maps anything; until then (and
            when the two quantiles coincide) scores pass unchanged.
        every: Frames between two readings of the window (the map); the first
            reading comes as soon as there are ``min_scores`` scores.
        auto_new_track: ``auto``: the tracker's ``new_track_thresh``; the map is used
            only while almost no score reaches it (module docstring). None: always.
    """

    def __init__(self, *, window: int, min_scores: int = 50, every: int = 1,
                 auto_new_track: float | None = None) -> None:
        if window < 1 or min_scores < 2 or every < 1:
            raise ValueError(f"need window >= 1, min_scores >= 2 and every >= 1, got "
                             f"{window}, {min_scores}, {every}")
        self.every = int(every)
        self.window = int(window)
        self.min_scores = int(min_scores)
        self.auto_new_track = auto_new_track
        self.reset()

    def reset(self) -> None:
        """Forget every score (a new source)."""
        self._frames: deque[np.ndarray] = deque(maxlen=self.window)
        self._count = 0
        self._since_reading: int | None = None  # None: not read yet
        self.raw_quantiles: tuple[float, float] | None = None  # in use, detector's scale
        self.engaged = self.auto_new_track is None  # the map is in use

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Take this frame's scores into the window and return them mapped, in [0, 1]."""
        scores = np.asarray(scores, np.float64)
        if len(self._frames) == self._frames.maxlen:
            self._count -= len(self._frames[0])
        self._frames.append(scores)
        self._count += len(scores)
        if self._since_reading is not None:
            self._since_reading += 1
        due = self._since_reading is None or self._since_reading >= self.every
        if due and self._count >= self.min_scores:
            self._read(np.concatenate(self._frames))
        return self.to_tracker(scores)

    def _read(self, window: np.ndarray) -> None:
        """Take the map from the window's quantiles (auto: when it is to be used)."""
        self._since_reading = 0
        if self.auto_new_track is not None and len(window) >= AUTO_MIN_SCORES:
            share = float(np.mean(window >= self.auto_new_track))
            if share < AUTO_ENGAGE:
                self.engaged = True
            elif share > AUTO_RELEASE:
                self.engaged = False
        lo, hi = np.quantile(window, QUANTILES)
        self.raw_quantiles = (float(lo), float(hi)) if self.engaged and hi > lo else None

    def to_tracker(self, raw: np.ndarray | float) -> np.ndarray:
        """Detector scores -> the tracker's scale with the map in use (clipped to [0, 1])."""
        raw = np.asarray(raw, np.float64)
        if self.raw_quantiles is None:
            return np.clip(raw, 0.0, 1.0)
        (lo, hi), (r_lo, r_hi) = self.raw_quantiles, REFERENCE
        return np.clip(r_lo + (raw - lo) * (r_hi - r_lo) / (hi - lo), 0.0, 1.0)

    def to_detector(self, value: float) -> float:
        """A value on the tracker's scale (a threshold) -> the detector's scale now."""
        if self.raw_quantiles is None:
            return float(value)
        (lo, hi), (r_lo, r_hi) = self.raw_quantiles, REFERENCE
        return float(lo + (value - r_lo) * (hi - lo) / (r_hi - r_lo))
