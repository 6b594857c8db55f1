"""Offline cross-camera association: constrained clustering of tracklets.

Every tracklet starts as its own cluster; the two clusters with the smallest
average appearance distance are merged while that distance is below
``threshold`` and no *cannot-link* constraint forbids it:

* two tracklets of one camera that overlap in time are different people;
* with ``transit_windows`` for a camera pair, two tracklets of those cameras may
  only be the same person when the gap between one's end and the other's start
  lies inside the window (seconds; a negative lower bound allows overlapping
  views where a person is seen by both cameras at once).

A constraint between two tracklets forbids merging any clusters that contain
them, so the result never puts two simultaneous tracks of one camera under one
global id. Average linkage keeps one confident pair from chaining two crowds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.types import GlobalTrack, Tracklet

__all__ = [
    "AssociationRules",
    "OfflineAssociator",
    "appearance_distance",
    "average_linkage",
    "cannot_link_matrix",
    "GroundCue",
    "ground_distance",
]

logger = logging.getLogger(__name__)


def appearance_distance(embeddings: np.ndarray) -> np.ndarray:
    """Cosine distance between L2-normalised rows: (N, D) -> (N, N) in [0, 2]."""
    e = np.asarray(embeddings, dtype=np.float32)
    return np.clip(1.0 - e @ e.T, 0.0, 2.0)


def _parse_windows(
    windows: Mapping[str, Sequence[float]] | None,
) -> dict[tuple[str, str], tuple[float, float]]:
    parsed: dict[tuple[str, str], tuple[float, float]] = {}
    for key, value in (windows or {}).items():
        cams = [c.strip() for c in str(key).split(",")]
        if len(cams) != 2 or len(value) != 2:
            raise ValueError(
                f"transit window {key!r}: {value!r} must look like 'camA,camB': [min_s, max_s]"
            )
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            raise ValueError(f"transit window {key!r}: min {lo} > max {hi}")
        parsed[(cams[0], cams[1])] = (lo, hi)
        parsed[(cams[1], cams[0])] = (lo, hi)
    return parsed


def cannot_link_matrix(
    tracklets: Sequence[Tracklet],
    transit_windows: Mapping[tuple[str, str], tuple[float, float]] | None = None,
    same_camera_gap_s: float = 0.0,
) -> np.ndarray:
    """Pairs of tracklets that can never share a global id: (N, N) bool.

    Args:
        tracklets: The tracklets, each with increasing timestamps.
        transit_windows: (camA, camB) -> (min_s, max_s) allowed gap from the end
            of the earlier tracklet to the start of the later one.
        same_camera_gap_s: Two tracklets of one camera closer than this in time
            (gap between end and start) are also kept apart.
    """
    n = len(tracklets)
    start = np.array([t.start_s for t in tracklets], dtype=np.float64)
    end = np.array([t.end_s for t in tracklets], dtype=np.float64)
    cams = np.array([t.camera_id for t in tracklets])
    # gap[i, j] = time from the end of the earlier one to the start of the later one;
    # negative when they overlap.
    gap = np.maximum(start[:, None], start[None, :]) - np.minimum(end[:, None], end[None, :])
    same_cam = cams[:, None] == cams[None, :]
    forbid = same_cam & (gap <= same_camera_gap_s)
    for (a, b), (lo, hi) in (transit_windows or {}).items():
        pair = (cams[:, None] == a) & (cams[None, :] == b)
        forbid |= pair & ((gap < lo) | (gap > hi))
    np.fill_diagonal(forbid, False)
    return forbid | forbid.T if n else forbid


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


def average_linkage(
    dist: np.ndarray,
    forbid: np.ndarray,
    threshold: float,
    sizes: np.ndarray | None = None,
) -> np.ndarray:
    """Constrained average-linkage clustering.

    Repeatedly merges the two clusters with the smallest average distance while it is
    at most ``threshold`` and no cannot-link pair lies between them.

    Args:
        dist: (N, N) symmetric distances between the starting items.
        forbid: (N, N) bool cannot-link pairs; a merged cluster inherits every
            constraint of its parts.
        threshold: Largest average distance at which two clusters merge.
        sizes: (N,) how many members each starting item already stands for (its
            weight in the average; items may be pre-merged groups); None = ones.

    Returns:
        int64 (N,) cluster label per item (the index of one item of the cluster).
    """
    n = dist.shape[0]
    d = np.array(dist, dtype=np.float64)
    blocked = np.array(forbid, dtype=bool)
    size = np.ones(n) if sizes is None else np.asarray(sizes, np.float64).copy()
    alive = np.ones(n, bool)
    label = np.arange(n)
    np.fill_diagonal(d, np.inf)
    while n > 1:
        masked = np.where(blocked | ~alive[:, None] | ~alive[None, :], np.inf, d)
        flat = int(np.argmin(masked))
        i, j = divmod(flat, n)
        if not masked[i, j] <= threshold:
            break
        # Average linkage update (Lance-Williams); constraints propagate by OR.
        d[i] = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])
        d[:, i] = d[i]
        d[i, i] = np.inf
        blocked[i] |= blocked[j]
        blocked[:, i] = blocked[i]
        size[i] += size[j]
        alive[j] = False
        label[label == j] = i
    return label


class AssociationRules:
    """Settings shared by the offline and online associators: when may tracklets merge."""

    def __init__(
        self,
        *,
        threshold: float = 0.40,
        min_quality: float = 0.0,
        transit_windows: Mapping[str, Sequence[float]] | None = None,
        same_camera_gap_s: float = 0.0,
    ) -> None:
        """
        Args:
            threshold: Largest average cosine distance at which two clusters merge.
                The default comes from benchmarks/reid_threshold.py with the shipped
                HA-CNN: at 0.40 single cross-camera crops of one person are accepted
                68% of the time and of two different people 2% (pooled tracklet
                vectors separate better than single crops).
            min_quality: Tracklets whose pooled-embedding quality is below this
                (or that have no embedding) stay alone with their own global id.
            transit_windows: ``{"camA,camB": [min_s, max_s]}`` allowed transit gaps.
            same_camera_gap_s: Minimum gap for one camera's tracklets to be joined
                (0 = any non-overlapping pair may be the same person re-entering).
        """
        if not 0.0 < threshold <= 2.0:
            raise ValueError(f"association threshold must be in (0, 2], got {threshold}")
        self.threshold = float(threshold)
        self.min_quality = float(min_quality)
        self.transit_windows = _parse_windows(transit_windows)
        self.same_camera_gap_s = float(same_camera_gap_s)


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

    def apply(self, tracklets: Sequence[Tracklet], dist: np.ndarray,
              forbid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gate and blend (N, N) appearance distances; returns new (dist, forbid)."""
        ground, count = ground_distance(tracklets, self.points_xy_m,
                                        time_bin_s=self.time_bin_s)
        seen = count >= self.min_common
        ground = np.nan_to_num(ground)
        forbid = forbid | (seen & (ground > self.gate_m))
        if self.weight > 0:
            scaled = np.minimum(ground / self.gate_m, 1.0)
            dist = np.where(seen, (1.0 - self.weight) * dist + self.weight * scaled, dist)
        return dist, forbid


class OfflineAssociator(AssociationRules):
    """Whole-recording cross-camera association by constrained agglomerative clustering.

    Keyword arguments: see :class:`AssociationRules`.
    """

    def associate(self, tracklets: Sequence[Tracklet], *,
                  ground: GroundCue | None = None) -> list[GlobalTrack]:
        """Group tracklets into global identities.

        Args:
            tracklets: The tracklets of all cameras.
            ground: Optional ground-plane cue (None = appearance and time only).

        Returns:
            One GlobalTrack per identity, numbered 1.. in order of first appearance.
            Every input tracklet belongs to exactly one GlobalTrack.
        """
        tracklets = list(tracklets)
        n = len(tracklets)
        if n == 0:
            return []
        usable = np.array(
            [t.embedding.size > 0 and t.quality >= self.min_quality for t in tracklets]
        )
        dim = max((t.embedding.size for t in tracklets), default=0)
        emb = np.zeros((n, max(dim, 1)), np.float32)
        for i, t in enumerate(tracklets):
            if usable[i]:
                emb[i, : t.embedding.size] = t.embedding
        dist = appearance_distance(emb).astype(np.float64)
        forbid = cannot_link_matrix(tracklets, self.transit_windows, self.same_camera_gap_s)
        forbid |= ~(usable[:, None] & usable[None, :])
        if ground is not None:
            dist, forbid = ground.apply(tracklets, dist, forbid)
        labels = self._cluster(dist, forbid)
        return self._global_tracks(tracklets, labels)

    def _cluster(self, dist: np.ndarray, forbid: np.ndarray) -> np.ndarray:
        return average_linkage(dist, forbid, self.threshold)

    @staticmethod
    def _global_tracks(tracklets: Sequence[Tracklet], labels: np.ndarray) -> list[GlobalTrack]:
        groups: dict[int, list[int]] = {}
        for idx, lab in enumerate(labels.tolist()):
            groups.setdefault(lab, []).append(idx)
        ordered = sorted(
            groups.values(),
            key=lambda members: min((tracklets[m].start_s, tracklets[m].camera_id,
                                     tracklets[m].track_id) for m in members),
        )
        out = []
        for gid, members in enumerate(ordered, start=1):
            keys = tuple(sorted(tracklets[m].key for m in members))
            out.append(GlobalTrack(global_id=gid, members=keys))
        logger.info("associated %d tracklets into %d identities", len(tracklets), len(out))
        return out

