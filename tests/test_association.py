"""Cross-camera association constraints on synthetic tracklets."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.association import OfflineAssociator, cannot_link_matrix
from pipeline.types import Tracklet
from tests.conftest import make_tracklet


def _tracklet(camera: str, track_id: int, start: int, stop: int, vector, fps: float = 10.0,
              quality: float = 1.0) -> Tracklet:
    return make_tracklet(camera, track_id, range(start, stop), vector, fps, quality)


def _groups(identities):
    return {frozenset(g.members) for g in identities}


def test_same_person_in_two_cameras_gets_one_global_id():
    person_a, person_b = [1, 0, 0, 0], [0, 1, 0, 0]
    tracklets = [
        _tracklet("c1", 1, 0, 50, person_a),
        _tracklet("c1", 2, 0, 50, person_b),
        _tracklet("c2", 1, 60, 90, np.add(person_a, [0, 0.1, 0, 0])),
        _tracklet("c2", 2, 60, 90, np.add(person_b, [0.1, 0, 0, 0])),
    ]
    ids = OfflineAssociator.from_params(threshold=0.3).associate(tracklets)
    assert _groups(ids) == {frozenset({("c1", 1), ("c2", 1)}),
                            frozenset({("c1", 2), ("c2", 2)})}
    assert [g.global_id for g in ids] == [1, 2]


def test_overlapping_tracklets_of_one_camera_never_share_an_id():
    same = [1, 0, 0]
    tracklets = [
        _tracklet("c1", 1, 0, 30, same),
        _tracklet("c1", 2, 20, 50, same),  # overlaps track 1 in time
        _tracklet("c2", 1, 0, 50, same),
    ]
    ids = OfflineAssociator.from_params(threshold=0.5).associate(tracklets)
    for g in ids:
        assert not {("c1", 1), ("c1", 2)} <= set(g.members)
    # every tracklet is assigned exactly once
    members = [m for g in ids for m in g.members]
    assert sorted(members) == sorted(t.key for t in tracklets)


def test_constraint_propagates_through_merged_clusters():
    # c2/1 looks like both c1 tracks; once merged with one, the other is blocked.
    tracklets = [
        _tracklet("c1", 1, 0, 30, [1, 0.0, 0]),
        _tracklet("c1", 2, 0, 30, [1, 0.2, 0]),
        _tracklet("c2", 1, 40, 60, [1, 0.05, 0]),
    ]
    ids = OfflineAssociator.from_params(threshold=0.5).associate(tracklets)
    assert _groups(ids) == {frozenset({("c1", 1), ("c2", 1)}), frozenset({("c1", 2)})}


def test_same_camera_reentry_may_merge_when_not_overlapping():
    tracklets = [_tracklet("c1", 1, 0, 20, [1, 0]), _tracklet("c1", 7, 40, 60, [1, 0.01])]
    assert len(OfflineAssociator.from_params(threshold=0.2).associate(tracklets)) == 1
    # the gap between them is 2.1 s: a 5 s minimum gap keeps them apart
    gap = OfflineAssociator.from_params(threshold=0.2, same_camera_gap_s=5.0).associate(tracklets)
    assert len(gap) == 2


def test_transit_window_forbids_impossible_transitions():
    a = _tracklet("c1", 1, 0, 10, [1, 0])      # ends at 0.9 s
    b = _tracklet("c2", 1, 300, 310, [1, 0])   # starts at 30 s: 29.1 s later
    assoc = OfflineAssociator.from_params(threshold=0.2, transit_windows={"c1,c2": [0.0, 10.0]})
    assert len(assoc.associate([a, b])) == 2
    wide = OfflineAssociator.from_params(threshold=0.2, transit_windows={"c2,c1": [0.0, 60.0]})
    assert len(wide.associate([a, b])) == 1
    forbid = cannot_link_matrix([a, b], {("c1", "c2"): (0.0, 10.0)})
    assert forbid.tolist() == [[False, True], [True, False]]


def test_dissimilar_and_unembedded_tracklets_stay_alone():
    tracklets = [
        _tracklet("c1", 1, 0, 10, [1, 0, 0]),
        _tracklet("c2", 1, 20, 30, [0, 1, 0]),
        Tracklet(camera_id="c3", track_id=1, frames=np.arange(3), timestamps_s=np.arange(3.0),
                 xyxy=np.zeros((3, 4)), embedding=np.zeros(0, np.float32)),
    ]
    ids = OfflineAssociator.from_params(threshold=0.5).associate(tracklets)
    assert len(ids) == 3


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="threshold"):
        OfflineAssociator.from_params(threshold=0.0)
    with pytest.raises(ValueError, match="camA,camB"):
        OfflineAssociator.from_params(transit_windows={"c1": [0, 1]})
    assert OfflineAssociator().associate([]) == []
