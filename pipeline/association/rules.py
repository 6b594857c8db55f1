"""What both association modes share: the merge rules and the distance between tracklets.

* :class:`AssociationRules`: when two tracklets may be one person (threshold, minimum
  embedding quality, transit windows between cameras, same-camera gap). One frozen,
  self-validating dataclass that the offline and the online associator both receive;
  :class:`OnlineOptions` holds the online mode's own settings.
* The distance is injected: ``distance`` maps pooled embeddings (N, D) to an (N, N)
  matrix (cosine distance by default, as norfair's ``distance_function``), and any
  number of :class:`DistanceTerm` objects then adjust distances and cannot-link pairs
  (the ground-plane cue, ``pipeline.association.ground.GroundCue``, is one such term).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from pipeline.types import Tracklet, renamed_to_seconds

__all__ = ["AssociationRules", "Distance", "DistanceTerm", "OnlineOptions",
           "appearance_distance", "cannot_link_matrix", "pair_distances", "split_params"]

Distance = Callable[[np.ndarray], np.ndarray]
"""Pooled embeddings float32 (N, D) -> (N, N) symmetric distances."""


class DistanceTerm(Protocol):
    """One more cue between tracklets: adjusts distances and cannot-link pairs.

    Called with the tracklets (matrix order), the (N, N) float64 distances so far and
    the (N, N) bool cannot-link pairs so far; returns the new ``(dist, forbid)``.
    """

    def __call__(self, tracklets: Sequence[Tracklet], dist: np.ndarray,
                 forbid: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def appearance_distance(embeddings: np.ndarray) -> np.ndarray:
    """Cosine distance between L2-normalised rows: (N, D) -> (N, N) in [0, 2]."""
    e = np.asarray(embeddings, dtype=np.float32)
    return np.clip(1.0 - e @ e.T, 0.0, 2.0)


def _parse_windows(windows: Mapping[Any, Sequence[float]] | None,
                   ) -> dict[tuple[str, str], tuple[float, float]]:
    parsed: dict[tuple[str, str], tuple[float, float]] = {}
    for key, value in (windows or {}).items():
        cams = list(key) if isinstance(key, tuple) else [c.strip() for c in str(key).split(",")]
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


@dataclass(frozen=True)
class AssociationRules:
    """When may tracklets merge: the settings both association modes share.

    Attributes:
        threshold: Largest average cosine distance at which two clusters merge, in
            (0, 2]. The default comes from benchmarks/reid_threshold.py with the shipped
            HA-CNN: at 0.40 single cross-camera crops of one person are accepted 68% of
            the time and of two different people 2% (pooled tracklet vectors separate
            better than single crops).
        min_quality: Tracklets whose pooled-embedding quality is below this (or that
            have no embedding) stay alone with their own global id.
        transit_windows: ``{"camA,camB": [min_s, max_s]}`` allowed gaps from the end of
            the earlier tracklet to the start of the later one (a negative minimum
            allows overlapping views). Stored both ways round as
            ``{(camA, camB): (min_s, max_s)}``.
        same_camera_gap_s: Minimum gap for one camera's tracklets to be joined
            (0 = any non-overlapping pair may be the same person re-entering).

    Raises:
        ValueError: A value out of range or a malformed transit window.
    """

    threshold: float = 0.40
    min_quality: float = 0.0
    transit_windows: Mapping[Any, Sequence[float]] = field(default_factory=dict)
    same_camera_gap_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 2.0:
            raise ValueError(f"association threshold must be in (0, 2], got {self.threshold}")
        if self.same_camera_gap_s < 0:
            raise ValueError(f"association same_camera_gap_s must be >= 0, got "
                             f"{self.same_camera_gap_s}")
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "min_quality", float(self.min_quality))
        object.__setattr__(self, "same_camera_gap_s", float(self.same_camera_gap_s))
        object.__setattr__(self, "transit_windows", _parse_windows(self.transit_windows))

    def usable(self, tracklet: Tracklet) -> bool:
        """Whether a tracklet's appearance may be matched at all."""
        return tracklet.embedding.size > 0 and tracklet.quality >= self.min_quality


@dataclass(frozen=True)
class OnlineOptions:
    """Settings of the online mode only (the merge rules are :class:`AssociationRules`).

    Attributes:
        lag_s: Seconds after its first assignment during which a tracklet's global
            id may still change; older assignments are frozen.
        min_s: Seconds an open tracklet must have been seen before it gets a global
            id (4 s; fewer changed ids more often and scored lower against ground
            truth, docs/LIVE.md). A finished tracklet gets one at any length.
        forget_after_s: Finished, frozen tracklets that ended this long ago are
            dropped from matching (bounds memory and cost on endless runs).
        switch_margin: Cosine distance by which tracklets holding one id count as
            closer when re-clustering (hysteresis; 0 = none, see the module docstring).
        switch_rounds: Consecutive ``update`` calls that must propose the same id
            change before it is made (1 = at once). Keep it well below ``lag_s`` /
            ``every_s``.
        every_s: Seconds of run clock between two association rounds in a run.

    Raises:
        ValueError: A value out of range.
    """

    lag_s: float = 10.0
    min_s: float = 4.0
    forget_after_s: float = 600.0
    switch_margin: float = 0.05
    switch_rounds: int = 2
    every_s: float = 1.0

    def __post_init__(self) -> None:
        if self.lag_s < 0 or not self.min_s >= 0 or self.forget_after_s < self.lag_s:
            raise ValueError("online association needs lag_s >= 0, min_s >= 0 and "
                             f"forget_after_s >= lag_s (got {self.lag_s}, {self.min_s}, "
                             f"{self.forget_after_s})")
        if self.switch_margin < 0 or self.switch_rounds < 1 or self.every_s < 0:
            raise ValueError("online association needs switch_margin >= 0, switch_rounds "
                             f">= 1 and every_s >= 0 (got {self.switch_margin}, "
                             f"{self.switch_rounds}, {self.every_s})")


def split_params(params: Mapping[str, Any], options: type | None = None,
                 ) -> tuple[AssociationRules, dict[str, Any]]:
    """Split flat config keys into :class:`AssociationRules` and a mode's own options.

    Args:
        params: Keys of the config's ``association`` section (without ``mode``).
        options: The mode's own options dataclass, or None when it has none.

    Raises:
        ValueError: A key that neither takes; the message lists the accepted keys.
    """
    rule_keys = {f.name for f in fields(AssociationRules)}
    own_keys = {f.name for f in fields(options)} if options is not None else set()
    unknown = sorted(set(params) - rule_keys - own_keys)
    renamed = renamed_to_seconds(unknown)
    if renamed:
        raise ValueError(f"association: {renamed}")
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} in association; "
                         f"allowed: {', '.join(sorted(rule_keys | own_keys))}")
    rules = AssociationRules(**{k: v for k, v in params.items() if k in rule_keys})
    return rules, {k: v for k, v in params.items() if k in own_keys}


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


def pair_distances(tracklets: Sequence[Tracklet], embeddings: np.ndarray,
                   rules: AssociationRules, distance: Distance,
                   terms: Sequence[DistanceTerm] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Distances and cannot-link pairs between tracklets, every cue applied.

    Args:
        tracklets: N tracklets (their times and cameras give the constraints).
        embeddings: float32 (N, D) the vectors ``distance`` compares.
        rules: Transit windows and same-camera gap.
        distance: Embeddings -> (N, N) distances.
        terms: Further cues, applied in order.

    Returns:
        ``(dist, forbid)``: (N, N) float64 distances, (N, N) bool cannot-link pairs.
    """
    dist = np.asarray(distance(embeddings), np.float64)
    forbid = cannot_link_matrix(tracklets, rules.transit_windows, rules.same_camera_gap_s)
    for term in terms:
        dist, forbid = term(tracklets, dist, forbid)
    return dist, forbid
