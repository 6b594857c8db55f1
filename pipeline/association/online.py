"""Online cross-camera association with a bounded revision lag (live streams).

Tracklets are fed while they grow (snapshots of open tracks) and when they finish.
A tracklet receives a global id once it has enough evidence: seen for at least
``min_s`` seconds (a finished tracklet: any length). It is matched to others only when its pooled
embedding has quality >= ``min_quality``; until then it holds an id of its own.
At every ``update`` all matchable tracklets whose assignment is younger than
``lag_s`` are re-clustered together with the FROZEN identities (assignments older
than ``lag_s``, which never change again), using the offline module's distance,
cannot-link constraints and average linkage. A tracklet may therefore change its
global id only within ``lag_s`` seconds of its first assignment; every assignment and
every change is returned as a :class:`Revision` (the runner writes them to
``revisions.csv``).

Constraints are those of the offline associator, with one conservative change: a
tracklet still open is taken to last until ``now_s`` (it may still be seen), so two
open tracks of one camera are never joined and a frozen decision cannot be
contradicted later by the track growing.

Id hysteresis keeps ids stable while tracklets grow (re-clustering every round from
scratch flips ids whenever new evidence moves a distance across the threshold: 141 id
changes for 58 tracklets on the four-camera sample, docs/LIVE.md):

* evidence before the first id: an open tracklet needs ``min_s`` seconds seen;
* a margin: when re-clustering, two tracklets that hold the same id count as
  ``switch_margin`` closer than their appearance distance. Splitting an identity, or
  moving a tracklet to another one, therefore needs evidence that beats the current
  grouping by that margin; merging identities, or a new tracklet joining one, needs
  none (the offline rule);
* confirmation: a tracklet that holds an id moves only when the clustering proposed
  the same move (same target identity) in ``switch_rounds`` consecutive rounds. Until
  then it keeps its id, unless keeping it would put two cannot-link tracklets under one
  id: then it moves at once (constraints before stability). The last round of a run
  (``finish``) has no later round to confirm in and makes its changes at once.

All three act within the lag, so its bound on revisions is unchanged (a change not
confirmed before the lag runs out is not made).

Memory stays flat on endless runs: finished, frozen tracklets are forgotten
``forget_after_s`` after they ended, and only a compact summary (times, pooled
embedding) is kept per tracklet.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.association.base import Association, Schedule
from pipeline.association.offline import average_linkage
from pipeline.association.rules import (
    AssociationRules,
    Distance,
    DistanceTerm,
    OnlineOptions,
    pair_distances,
)
from pipeline.association.rules import appearance_distance as cosine
from pipeline.geometry import linear_assignment
from pipeline.types import Identities, Revision, TrackKey, Tracklet

__all__ = ["OnlineAssociator", "OnlineOptions", "Revision"]

logger = logging.getLogger(__name__)

Key = TrackKey


Target = int | frozenset[Key]
"""Where a held-back id change leads: an existing identity (its global id), or an
identity not founded yet, named by the tracklets it would be founded with."""

Label = int
"""A proposed id: > 0 an existing global id; < 0 a placeholder for an identity new in
this round (turned into a fresh global id when the round's decisions are made)."""


@dataclass
class _Entry:
    summary: Tracklet  # first and last observation only (see _summary)
    seen_s: float  # seconds the tracklet was seen (Tracklet.observed_s)
    is_open: bool
    global_id: int = -1
    assigned_s: float = float("nan")
    pending: Target | None = None  # target of a change held back
    pending_rounds: int = 0  # consecutive rounds that change was proposed


@dataclass(frozen=True)
class _Proposal:
    """One round's clustering: ``keys`` in matrix order (frozen identities first)."""

    keys: list[Key]
    label: dict[Key, Label]  # proposed id per tracklet
    forbid: np.ndarray  # (N, N) cannot-link pairs


def _summary(t: Tracklet) -> Tracklet:
    """The tracklet cut to its first and last observation (what matching needs: its
    span, camera and pooled embedding), so memory does not grow with its length."""
    ends = [0, -1]
    return Tracklet(camera_id=t.camera_id, track_id=t.track_id, frames=t.frames[ends],
                    timestamps_s=t.timestamps_s[ends], xyxy=t.xyxy[ends],
                    embedding=t.embedding, quality=t.quality)


class OnlineAssociator(Association):
    """Bounded-lag cross-camera association (see the module docstring).

    Args:
        rules: When tracklets may merge (the same rules and defaults as offline).
        options: The online mode's own settings.
        distance: Pooled embeddings (N, D) -> (N, N) distances (cosine by default).
        terms: Further cues applied in every round (see ``DistanceTerm``); they see
            compact tracklet summaries (first and last frame only).
    """

    mode = "online"
    options_type = OnlineOptions

    def __init__(self, *, rules: AssociationRules | None = None,
                 options: OnlineOptions | None = None, distance: Distance = cosine,
                 terms: Sequence[DistanceTerm] = ()) -> None:
        super().__init__(rules=rules, distance=distance, terms=terms)
        self.options = options if options is not None else OnlineOptions()
        self._entries: dict[Key, _Entry] = {}
        self._next_id = 1
        self._members: Counter[int] = Counter()  # keys ever holding each id (live count)
        self._cameras: dict[int, set[str]] = {}
        # The last id of every tracklet ever assigned (one int per tracklet: what the
        # final rewrite of the rows needs, also after the tracklet is forgotten).
        self._final: dict[Key, int] = {}
        self._tracklets = 0
        self.revisions = 0
        self.constraint_moves = 0  # changes made before confirmation (constraints)
        self._last_round = False
        self._schedule = self.new_schedule()

    @property
    def snapshot_s(self) -> float:  # type: ignore[override]
        """Open tracklets are wanted once they have been seen for ``min_s`` seconds."""
        return self.options.min_s

    @property
    def min_s(self) -> float:
        """Seconds an open tracklet must have been seen before it gets an id."""
        return self.options.min_s

    def new_schedule(self) -> Schedule:
        """Every ``options.every_s`` seconds of run clock (the first call is due)."""
        return Schedule(self.options.every_s)

    def due(self, now_s: float) -> bool:
        """Every ``options.every_s`` seconds of run clock (the first call is due)."""
        return self._schedule.due(now_s)

    def identities(self) -> Identities:
        return Identities(global_of=dict(self._final), tracklets=self._tracklets,
                          revisions=self.revisions)

    # ------------------------------------------------------------------ queries
    def global_id(self, camera: str, track_id: int) -> int:
        """Current global id of a tracklet, or -1 (not yet assigned / forgotten)."""
        entry = self._entries.get((camera, int(track_id)))
        return -1 if entry is None else entry.global_id

    @property
    def num_identities(self) -> int:
        """Global ids that hold at least one tracklet."""
        return sum(1 for n in self._members.values() if n > 0)

    @property
    def num_multi_camera(self) -> int:
        """Identities seen by two or more cameras."""
        return sum(1 for g, cams in self._cameras.items() if self._members[g] > 0
                   and len(cams) > 1)

    # ------------------------------------------------------------------ updates
    def update(
        self,
        *,
        now_s: float,
        open_tracklets: Iterable[Tracklet] = (),
        finished: Iterable[Tracklet] = (),
    ) -> list[Revision]:
        """Take new evidence and (re)assign global ids.

        Args:
            now_s: Current time, seconds, on the tracklets' clock.
            open_tracklets: Snapshots of ALL tracklets still open (tracks absent here
                and not in ``finished`` are treated as ended at their last snapshot).
            finished: Tracklets that ended since the last call.

        Returns:
            The assignments (old id -1) and changes made, in key order.
        """
        seen: set[Key] = set()
        for t in open_tracklets:
            self._store(t, is_open=True)
            seen.add(t.key)
        for t in finished:
            self._store(t, is_open=False)
            seen.add(t.key)
            self._tracklets += 1
        for key, entry in self._entries.items():
            if entry.is_open and key not in seen:
                entry.is_open = False
        revisions = self._assign(float(now_s))
        self._forget(float(now_s))
        return revisions

    def finish(self, *, now_s: float, finished: Iterable[Tracklet] = (),
               short_tracks: Sequence[Key] = ()) -> list[Revision]:
        """Last update of a run: every remaining tracklet is closed and gets an id.

        There is no later round to confirm a change in, so this one makes the changes it
        proposes at once (``switch_rounds`` does not apply; the margin and the lag do).
        ``short_tracks`` (too short to be tracklets) keep no id (their rows stay -1).
        """
        for entry in self._entries.values():
            entry.is_open = False
        self._last_round = True
        try:
            return self.update(now_s=now_s, finished=finished)
        finally:
            self._last_round = False

    def _store(self, t: Tracklet, *, is_open: bool) -> None:
        if len(t.frames) == 0:
            return
        entry = self._entries.get(t.key)
        if entry is None:
            self._entries[t.key] = _Entry(summary=_summary(t), seen_s=t.observed_s,
                                          is_open=is_open)
        else:
            entry.summary, entry.seen_s, entry.is_open = _summary(t), t.observed_s, is_open

    def _long_enough(self, entry: _Entry) -> bool:
        return entry.seen_s >= self.options.min_s - 1e-6  # float error of n * period

    def _matchable(self, entry: _Entry) -> bool:
        return self.rules.usable(entry.summary)

    def _assign(self, now_s: float) -> list[Revision]:
        frozen: dict[int, list[Key]] = {}
        movable: list[Key] = []
        singles: list[Key] = []
        for key, e in self._entries.items():
            assigned = e.global_id > 0
            if assigned and now_s - e.assigned_s > self.options.lag_s:
                e.pending, e.pending_rounds = None, 0
                if self._matchable(e):
                    frozen.setdefault(e.global_id, []).append(key)
            elif not self._matchable(e):
                # No usable appearance (yet): an id of its own once long enough; it
                # joins others if it gains appearance while still revisable.
                if not assigned and (not e.is_open or self._long_enough(e)):
                    singles.append(key)
            elif assigned or not e.is_open or self._long_enough(e):
                movable.append(key)
        labels: dict[Key, int] = {key: -1 - i for i, key in enumerate(sorted(singles))}
        waiting: dict[Key, int] = {}
        if movable:
            proposal = self._recluster(now_s, frozen, sorted(movable), -1 - len(labels))
            labels.update(self._hold_back(proposal, sorted(movable)))
            waiting = {k: proposal.label[k] for k in movable
                       if proposal.label[k] < 0 and labels[k] != proposal.label[k]}
        # Placeholders (negative labels: identities new this round) become fresh ids.
        fresh: dict[int, int] = {}
        for key in sorted(labels):
            if labels[key] < 0:
                labels[key] = fresh.setdefault(labels[key], self._new_id())
        for key, placeholder in waiting.items():
            # A change held back towards an identity that others founded this round:
            # from now on its target is that identity's id.
            if placeholder in fresh:
                self._entries[key].pending = fresh[placeholder]
        revisions = []
        for key, new in sorted(labels.items()):
            entry = self._entries[key]
            if new == entry.global_id:
                continue
            old = entry.global_id
            if old > 0:
                self._members[old] -= 1
                self.revisions += 1
            else:
                entry.assigned_s = now_s
            entry.global_id = new
            entry.pending, entry.pending_rounds = None, 0
            self._members[new] += 1
            self._cameras.setdefault(new, set()).add(key[0])
            self._final[key] = new
            revisions.append(Revision(now_s, key[0], key[1], old, new))
        return revisions

    def _recluster(self, now_s: float, frozen: dict[int, list[Key]], movable: list[Key],
                   next_placeholder: int) -> _Proposal:
        """Cluster the movable tracklets with the frozen identities (fixed groups).

        Clusters without a frozen member keep ids their members hold where possible
        (matching clusters to held ids so that most tracklets keep theirs); the others
        get placeholders (negative labels from ``next_placeholder`` down).
        """
        groups = [frozen[g] for g in sorted(frozen)] + [[k] for k in movable]
        keys = [k for group in groups for k in group]
        owner = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
        tracklets = [self._constraint_view(self._entries[k], now_s) for k in keys]
        dist, forbid = pair_distances(tracklets, np.stack([t.embedding for t in tracklets]),
                                      self.rules, self.distance, self.terms)
        # Hysteresis: tracklets holding one id count as switch_margin closer, so the
        # clustering keeps an identity together unless the evidence beats it by that.
        held = np.array([self._entries[k].global_id for k in keys])
        together = (held[:, None] == held[None, :]) & (held[:, None] > 0)
        np.fill_diagonal(together, False)
        biased = np.clip(dist - self.options.switch_margin * together, 0.0, None)
        n = len(groups)
        # Group-level average distance and "any member pair forbidden".
        onehot = np.zeros((n, len(keys)))
        onehot[owner, np.arange(len(keys))] = 1.0
        sizes = onehot.sum(axis=1)
        group_dist = onehot @ biased.astype(np.float64) @ onehot.T / np.outer(sizes, sizes)
        group_forbid = (onehot @ forbid.astype(np.float64) @ onehot.T) > 0
        n_frozen = len(frozen)
        group_forbid[:n_frozen, :n_frozen] = True  # frozen identities never merge
        np.fill_diagonal(group_forbid, False)
        clustered = average_linkage(group_dist, group_forbid, self.rules.threshold, sizes)

        frozen_ids = sorted(frozen)
        clusters: dict[int, list[int]] = {}
        for g, lab in enumerate(clustered.tolist()):
            clusters.setdefault(lab, []).append(g)
        label: dict[Key, int] = {k: gid for gid in frozen_ids for k in frozen[gid]}
        taken = set(frozen_ids)
        free_clusters = []
        for members in clusters.values():
            anchor = [g for g in members if g < n_frozen]
            if anchor:
                gid = frozen_ids[anchor[0]]
                label.update({groups[g][0]: gid for g in members if g >= n_frozen})
            else:
                free_clusters.append(members)
        # Keep as many tracklets on the id they hold as possible: a one-to-one matching
        # of clusters to held ids, weighted by how many members hold each (a cluster
        # taking "the majority id" greedily can push a whole other cluster off its id);
        # on a tie the bigger cluster keeps the id.
        free_clusters.sort(key=lambda m: min(groups[g][0] for g in m))
        held = sorted({self._entries[groups[g][0]].global_id for m in free_clusters
                       for g in m} - taken - {-1})
        column = {gid: j for j, gid in enumerate(held)}
        weight = np.zeros((len(free_clusters), len(held)))
        for i, members in enumerate(free_clusters):
            for g in members:
                gid = self._entries[groups[g][0]].global_id
                if gid in column:
                    weight[i, column[gid]] += 1.0 + 1e-3 * len(members)
        matches, _, _ = linear_assignment(-weight, max_cost=-0.5)
        chosen = {int(i): held[int(j)] for i, j in matches}
        placeholder = next_placeholder
        for i, members in enumerate(free_clusters):
            if i not in chosen:
                chosen[i], placeholder = placeholder, placeholder - 1
            label.update({groups[g][0]: chosen[i] for g in members})
        return _Proposal(keys=keys, label=label, forbid=forbid)

    def _hold_back(self, proposal: _Proposal, movable: list[Key]) -> dict[Key, int]:
        """The proposal with id changes not yet proposed ``switch_rounds`` times held back.

        Returns:
            The label of every movable tracklet: its current id where a change is held
            back, else the proposed one (a positive id or a placeholder).
        """
        final = {k: proposal.label[k] for k in movable}
        held: set[Key] = set()
        for key in movable:
            entry = self._entries[key]
            old, new = entry.global_id, proposal.label[key]
            if old <= 0 or new == old:
                entry.pending, entry.pending_rounds = None, 0
                continue
            # The target: an existing identity, or (a new one) the tracklets it would join.
            target = new if new > 0 else frozenset(
                k for k, lab in proposal.label.items() if lab == new and k != key)
            if entry.pending == target:
                entry.pending_rounds += 1
            else:
                entry.pending, entry.pending_rounds = target, 1
            if entry.pending_rounds < self.options.switch_rounds and not self._last_round:
                final[key] = old
                held.add(key)
        if held:
            self._keep_constraints(proposal, final, held)
        return final

    def _keep_constraints(self, proposal: _Proposal, final: dict[Key, int],
                          held: set[Key]) -> None:
        """Let held-back changes through where staying would join cannot-link tracklets.

        The proposal itself respects every constraint, so each conflict involves a held
        back tracklet; moving it as proposed removes the conflict. Updates ``final``.
        """
        keys = proposal.keys
        labels = np.array([final.get(k, proposal.label[k]) for k in keys])
        while True:
            bad = np.argwhere(proposal.forbid & (labels[:, None] == labels[None, :]))
            conflict = next(((keys[i], keys[j]) for i, j in bad.tolist()), None)
            if conflict is None:
                return
            key = next((k for k in sorted(conflict) if k in held), None)
            if key is None:  # pragma: no cover - the proposal is conflict-free
                raise RuntimeError(f"online association: proposal joins {conflict}")
            held.discard(key)
            self.constraint_moves += 1
            final[key] = proposal.label[key]
            labels[keys.index(key)] = final[key]
            logger.debug("online association: %s moves at once (staying would join it "
                         "with a tracklet it cannot be)", key)

    def _constraint_view(self, entry: _Entry, now_s: float) -> Tracklet:
        t = entry.summary
        if not entry.is_open or t.end_s >= now_s:
            return t
        return Tracklet(camera_id=t.camera_id, track_id=t.track_id, frames=t.frames,
                        timestamps_s=[t.start_s, now_s], xyxy=t.xyxy, embedding=t.embedding,
                        quality=t.quality)

    def _new_id(self) -> int:
        gid = self._next_id
        self._next_id += 1
        return gid

    def _forget(self, now_s: float) -> None:
        stale = [k for k, e in self._entries.items()
                 if not e.is_open and now_s - e.summary.end_s > self.options.forget_after_s
                 and (e.global_id > 0 and now_s - e.assigned_s > self.options.lag_s)]
        for key in stale:
            del self._entries[key]
        if stale:
            logger.debug("online association: forgot %d old tracklets", len(stale))
