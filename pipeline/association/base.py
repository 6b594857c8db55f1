"""The interface both association modes implement, so the frame loop needs no mode.

The runner hands an associator the tick's tracklet events (snapshots of open tracklets
and the tracklets that finished) when :meth:`Association.due` says so, reads the global
id known now for each row it writes, and at the end calls :meth:`Association.finish`.
Decisions come back as :class:`~pipeline.types.Revision` lists (id set or changed) and,
at the end, as :class:`~pipeline.types.Identities`; the runner passes both to the sinks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.association.rules import (
    AssociationRules,
    Distance,
    DistanceTerm,
    appearance_distance,
    split_params,
)
from pipeline.types import Identities, Revision, TrackKey, Tracklet

__all__ = ["Association", "Schedule"]


@dataclass
class Schedule:
    """When association is due: every ``every_s`` seconds of run clock, the first call
    due; never with ``every_s`` None (offline association waits for the end).

    The associator owns one; a camera worker elsewhere (``pipeline.ray_worker``) gets
    a copy (:meth:`Association.new_schedule`) and decides by the same rule when to hand
    on its tracklet events.
    """

    every_s: float | None = None
    last_s: float = float("-inf")

    def due(self, now_s: float) -> bool:
        if self.every_s is None or now_s - self.last_s < self.every_s:
            return False
        self.last_s = now_s
        return True


class Association(ABC):
    """Cross-camera association of tracklets into global identities (one run).

    Attributes:
        mode: The mode's name (``ASSOCIATORS`` key, reported in the run summary).
        snapshot_s: Open tracklets the associator wants in ``update``: those seen for
            at least this many seconds; None = none (it only needs finished ones, and
            gives no ids before :meth:`finish`).
    """

    mode: str = ""
    snapshot_s: float | None = None
    options_type: type | None = None  # the mode's own options dataclass, if any

    def __init__(self, *, rules: AssociationRules | None = None,
                 distance: Distance = appearance_distance,
                 terms: Sequence[DistanceTerm] = ()) -> None:
        """
        Args:
            rules: When tracklets may merge (threshold, quality, windows, gap).
            distance: Pooled embeddings (N, D) -> (N, N) distances (cosine by default).
            terms: Further cues applied in every association (see ``DistanceTerm``).
        """
        self.rules = rules if rules is not None else AssociationRules()
        self.distance = distance
        self.terms = tuple(terms)

    @classmethod
    def from_params(cls, *, terms: Sequence[DistanceTerm] = (), **params: Any) -> Association:
        """Build from flat config keys: :class:`AssociationRules` fields and the mode's
        own options (``options_type``); an unknown key raises ValueError listing both.
        ``terms``: further cues (see ``DistanceTerm``)."""
        rules, own = split_params(params, cls.options_type)
        if cls.options_type is None:
            return cls(rules=rules, terms=terms)
        return cls(rules=rules, options=cls.options_type(**own), terms=terms)

    def new_schedule(self) -> Schedule:
        """A fresh copy of this mode's schedule; never due here (the end only)."""
        return Schedule()

    def due(self, now_s: float) -> bool:
        """Whether the runner should call :meth:`update` at ``now_s`` (run clock, s)."""
        return False

    @abstractmethod
    def update(self, *, now_s: float, open_tracklets: Iterable[Tracklet] = (),
               finished: Iterable[Tracklet] = ()) -> list[Revision]:
        """Take the tick's tracklet events; returns the id decisions made now."""

    @abstractmethod
    def finish(self, *, now_s: float, finished: Iterable[Tracklet] = (),
               short_tracks: Sequence[TrackKey] = ()) -> list[Revision]:
        """Last update of a run: every tracklet is closed; returns the last decisions.

        Args:
            now_s: End of the run, seconds.
            finished: Tracklets that ended since the last update.
            short_tracks: Tracks too short to be tracklets (no appearance summary).
        """

    @abstractmethod
    def identities(self) -> Identities:
        """The final identities (after :meth:`finish`)."""

    def global_id(self, camera: str, track_id: int) -> int:
        """Global id of a track known now; -1 when none yet."""
        return -1
