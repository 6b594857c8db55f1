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

import numpy as np

from pipeline.types import GlobalTrack, Tracklet

__all__ = [
    "AssociationRules",
    "OfflineAssociator",
    "appearance_distance",
    "average_linkage",
    "cannot_link_matrix",
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


class OfflineAssociator(AssociationRules):
    """Whole-recording cross-camera association by constrained agglomerative clustering.

    Keyword arguments: see :class:`AssociationRules`.
    """

    def associate(self, tracklets: Sequence[Tracklet]) -> list[GlobalTrack]:
        """Group tracklets into global identities.

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

