"""The ground-plane cue: where tracklets stand, as one more association distance term.

For cameras with overlapping views and a ground-plane calibration, two tracklets seen
at the same moments far apart on the ground cannot be one person, and near ones are
likely to be. :class:`GroundCue` is a :class:`~pipeline.association.rules.DistanceTerm`:
pass it in ``terms`` to ``OfflineAssociator.associate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.types import Tracklet

__all__ = ["FloorCue", "GroundCue", "ground_distance"]


def ground_distance(
    tracklets: Sequence[Tracklet],
    ground_xy: Sequence[np.ndarray],
    *,
    time_bin_s: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean ground-plane distance between tracklets seen at the same moments.

    Observations whose timestamps fall in the same ``time_bin_s`` bin count as
    simultaneous; for every pair of tracklets the distances between their simultaneous
    ground points are averaged.

    Args:
        tracklets: N tracklets.
        ground_xy: Per tracklet, (M_i, 2) ground-plane points in metres, row aligned with
            its frames (e.g. the box foot points projected with the camera calibration);
            NaN rows are unknown and ignored.
        time_bin_s: Width of the time bins that define "seen at the same moment".

    Returns:
        ``(mean_m, count)``: (N, N) float64 mean distance in metres (NaN where the pair
        has no simultaneous observation, and on the diagonal) and (N, N) int64 number of
        simultaneous observation pairs.
    """
    n = len(tracklets)
    if len(ground_xy) != n:
        raise ValueError(f"ground_xy has {len(ground_xy)} entries for {n} tracklets")
    owner, times, points = [], [], []
    for i, (t, xy) in enumerate(zip(tracklets, ground_xy, strict=True)):
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        if xy.shape[0] != len(t.frames):
            raise ValueError(f"ground_xy of tracklet {t.key} has {xy.shape[0]} rows for "
                             f"{len(t.frames)} frames")
        ok = np.isfinite(xy).all(axis=1)
        owner.append(np.full(int(ok.sum()), i))
        times.append(t.timestamps_s[ok])
        points.append(xy[ok])
    total = np.zeros((n, n))
    count = np.zeros((n, n), np.int64)
    if n and sum(len(o) for o in owner):
        own, xy = np.concatenate(owner), np.concatenate(points)
        bins = np.floor(np.concatenate(times) / time_bin_s).astype(np.int64)
        order = np.argsort(bins, kind="stable")
        own, xy, bins = own[order], xy[order], bins[order]
        starts = np.flatnonzero(np.r_[True, np.diff(bins) != 0, True])
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            if b - a < 2:
                continue
            o, p = own[a:b], xy[a:b]
            d = np.linalg.norm(p[:, None, :] - p[None, :, :], axis=2)
            np.add.at(total, (o[:, None], o[None, :]), d)
            np.add.at(count, (o[:, None], o[None, :]), 1)
    np.fill_diagonal(count, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, count



@dataclass(frozen=True)
class GroundCue:
    """Where tracklets stand on the ground plane: an optional association cue.

    For cameras with overlapping views and a ground-plane calibration (e.g. box foot
    points projected through each camera's homography). Pairs of tracklets seen at the
    same moments are compared by their mean ground distance.

    Attributes:
        points_xy_m: Per tracklet (same order as the tracklets given to ``associate``),
            (M_i, 2) ground-plane points in metres, row aligned with its frames; NaN rows
            are unknown.
        gate_m: Pairs seen at the same moments farther apart than this (mean, metres)
            cannot be one person.
        weight: In [0, 1]; for pairs seen at the same moments the distance becomes
            ``(1 - weight) * appearance + weight * min(ground / gate_m, 1)``.
            0 = the cue only forbids (gate).
        time_bin_s: Timestamps in one bin of this width count as simultaneous.
        min_common: Pairs with fewer simultaneous observations are left to appearance
            (a foot point of a small, far box can be metres off; one or two of them must
            not forbid a merge, since a constraint spreads to whole clusters).
    """

    points_xy_m: Sequence[np.ndarray]
    gate_m: float = 2.5
    weight: float = 0.0
    time_bin_s: float = 0.05
    min_common: int = 3

    def __post_init__(self) -> None:
        if self.gate_m <= 0 or not 0.0 <= self.weight <= 1.0 or self.time_bin_s <= 0:
            raise ValueError(f"GroundCue: gate_m ({self.gate_m}) and time_bin_s "
                             f"({self.time_bin_s}) must be > 0, weight ({self.weight}) in [0, 1]")
        if self.min_common < 1:
            raise ValueError(f"GroundCue: min_common must be >= 1, got {self.min_common}")

    def __call__(self, tracklets: Sequence[Tracklet], dist: np.ndarray,
                 forbid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gate and blend (N, N) distances; returns the new ``(dist, forbid)``."""
        ground, count = ground_distance(tracklets, self.points_xy_m,
                                        time_bin_s=self.time_bin_s)
        seen = count >= self.min_common
        ground = np.nan_to_num(ground)
        forbid = forbid | (seen & (ground > self.gate_m))
        if self.weight > 0:
            scaled = np.minimum(ground / self.gate_m, 1.0)
            dist = np.where(seen, (1.0 - self.weight) * dist + self.weight * scaled, dist)
        return dist, forbid


@dataclass(frozen=True)
class FloorCue:
    """The ground-plane cue of a run whose cameras carry calibrations.

    Each tracklet's floor points come from its camera's calibration (its boxes' foot
    points, ``pipeline.calibration.FloorPositions``; uncalibrated cameras: unknown), then
    the pairs are gated and blended as :class:`GroundCue` does. Only pairs of tracklets
    seen at the same moments by two calibrated cameras are touched, so it acts where
    calibrated views overlap and nowhere else.

    Attributes:
        positions: The run's calibrations (``boxes(camera, xyxy) -> (M, 2) | None``).
        gate_m, weight, time_bin_s, min_common: As in :class:`GroundCue`.
    """

    positions: Any
    gate_m: float = 2.5
    weight: float = 0.0
    time_bin_s: float = 0.05
    min_common: int = 3

    def __call__(self, tracklets: Sequence[Tracklet], dist: np.ndarray,
                 forbid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gate and blend (N, N) distances; returns the new ``(dist, forbid)``."""
        points = []
        for t in tracklets:
            xy = self.positions.boxes(t.camera_id, t.xyxy)
            points.append(np.full((len(t.frames), 2), np.nan) if xy is None else xy)
        cue = GroundCue(points_xy_m=points, gate_m=self.gate_m, weight=self.weight,
                        time_bin_s=self.time_bin_s, min_common=self.min_common)
        return cue(tracklets, dist, forbid)
