"""Offline cross-camera association: constrained clustering of tracklets.

Every tracklet starts as its own cluster; the two clusters with the smallest
average distance are merged while that distance is below the rules' ``threshold``
and no *cannot-link* constraint forbids it:

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
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pipeline.association.base import Association
from pipeline.association.rules import DistanceTerm, pair_distances
from pipeline.types import GlobalTrack, Identities, Revision, TrackKey, Tracklet

__all__ = ["OfflineAssociator", "average_linkage"]

logger = logging.getLogger(__name__)


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


class OfflineAssociator(Association):
    """Whole-recording cross-camera association by constrained agglomerative clustering.

    In a run it collects the finished tracklets and associates them all in
    :meth:`finish`; no id is known before the end (rows are written with ``-1`` and
    rewritten). :meth:`associate` is the same clustering as a plain function of a list.

    Keyword arguments: ``rules``, ``distance``, ``terms`` (see :class:`Association`).
    """

    mode = "offline"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tracklets: list[Tracklet] = []
        self._identities = Identities(global_of={})

    @property
    def threshold(self) -> float:
        """The rules' merge threshold (cosine distance)."""
        return self.rules.threshold

    def update(self, *, now_s: float, open_tracklets: Iterable[Tracklet] = (),
               finished: Iterable[Tracklet] = ()) -> list[Revision]:
        """Keep the finished tracklets for :meth:`finish` (open ones are ignored)."""
        self._tracklets += list(finished)
        return []

    def finish(self, *, now_s: float, finished: Iterable[Tracklet] = (),
               short_tracks: Sequence[TrackKey] = ()) -> list[Revision]:
        """Associate every tracklet; each short track gets an identity of its own.

        Short tracks are numbered after the associated identities. Returns no
        revisions (nothing was assigned before); read :meth:`identities`.
        """
        tracklets = self._tracklets + list(finished)
        self._tracklets = []
        global_of: dict[TrackKey, int] = {key: g.global_id for g in self.associate(tracklets)
                                          for key in g.members}
        associated = len(set(global_of.values()))
        next_id = max(global_of.values(), default=0) + 1
        short = 0
        for key in short_tracks:
            if key not in global_of:
                global_of[key] = next_id
                next_id += 1
                short += 1
        logger.info("associated %d tracklets into %d identities; %d tracks shorter than "
                    "tracklets.min_length_s got one identity each: %d identities in all",
                    len(tracklets), associated, short, associated + short)
        self._identities = Identities(global_of=global_of, tracklets=len(tracklets),
                                      short_tracks=short)
        return []

    def identities(self) -> Identities:
        return self._identities

    def associate(self, tracklets: Sequence[Tracklet], *,
                  terms: Sequence[DistanceTerm] = ()) -> list[GlobalTrack]:
        """Group tracklets into global identities.

        Args:
            tracklets: The tracklets of all cameras.
            terms: Cues for this call only, after the associator's own (e.g. a
                ``GroundCue`` whose points are aligned with ``tracklets``).

        Returns:
            One GlobalTrack per identity, numbered 1.. in order of first appearance.
            Every input tracklet belongs to exactly one GlobalTrack.
        """
        tracklets = list(tracklets)
        n = len(tracklets)
        if n == 0:
            return []
        usable = np.array([self.rules.usable(t) for t in tracklets])
        dim = max((t.embedding.size for t in tracklets), default=0)
        emb = np.zeros((n, max(dim, 1)), np.float32)
        for i, t in enumerate(tracklets):
            if usable[i]:
                emb[i, : t.embedding.size] = t.embedding
        unusable = ~(usable[:, None] & usable[None, :])
        dist, forbid = pair_distances(tracklets, emb, self.rules, self.distance,
                                      (_forbid(unusable), *self.terms, *terms))
        labels = average_linkage(dist, forbid, self.rules.threshold)
        return self._global_tracks(tracklets, labels)

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
        return out


def _forbid(pairs: np.ndarray) -> DistanceTerm:
    """A term that forbids the given (N, N) pairs."""
    def term(tracklets: Sequence[Tracklet], dist: np.ndarray,
             forbid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return dist, forbid | pairs
    return term

