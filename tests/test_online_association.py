"""Online (bounded-lag) cross-camera association on synthetic growing tracklets.

Tracklet embeddings are made with exact cosine distances (``_at``) where a test is about
a distance crossing the threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.association import (
    ASSOCIATORS,
    AssociationRules,
    OnlineAssociator,
    cannot_link_matrix,
)
from pipeline.export import RevisionCsvWriter, final_global_ids, read_revisions
from pipeline.tracking import TrackletBuilder
from pipeline.types import Tracklet, Tracks
from tests.conftest import make_tracklet

FPS = 10.0


def _tracklet(camera: str, track_id: int, start_s: float, end_s: float, vector,
              quality: float = 1.0) -> Tracklet:
    frames = range(round(start_s * FPS), round(end_s * FPS) + 1)
    return make_tracklet(camera, track_id, frames, vector, FPS, quality)


def _replay(revisions) -> dict[tuple[str, int], int]:
    final: dict[tuple[str, int], int] = {}
    for r in revisions:
        assert final.get((r.camera, r.track_id), -1) == r.old_global_id  # a consistent log
        final[(r.camera, r.track_id)] = r.new_global_id
    return final


def _at(distance: float, towards: int = 0, dim: int = 6) -> np.ndarray:
    """Unit vector at exactly ``distance`` (cosine) from basis vector ``towards``."""
    v = np.zeros(dim)
    v[towards] = 1.0 - distance
    v[dim - 1] = np.sqrt(1.0 - (1.0 - distance) ** 2)
    return v


def _between(d0: float, d1: float, dim: int = 6) -> np.ndarray:
    """Unit vector at cosine distance ``d0`` from basis vector 0 and ``d1`` from 1."""
    v = np.zeros(dim)
    v[0], v[1] = 1.0 - d0, 1.0 - d1
    v[dim - 1] = np.sqrt(1.0 - v[0] ** 2 - v[1] ** 2)
    return v


NO_HYSTERESIS = {"switch_margin": 0.0, "switch_rounds": 1}


def test_registered_and_validated():
    assert ASSOCIATORS["online"] is OnlineAssociator
    with pytest.raises(ValueError, match="lag_s"):
        OnlineAssociator.from_params(lag_s=-1)
    with pytest.raises(ValueError, match="threshold"):
        OnlineAssociator.from_params(threshold=0)
    with pytest.raises(ValueError, match="switch_rounds >= 1"):
        OnlineAssociator.from_params(switch_rounds=0)
    with pytest.raises(ValueError, match="switch_margin"):
        OnlineAssociator.from_params(switch_margin=-0.1)
    with pytest.raises(ValueError, match="unknown key.*'lag' in association; allowed:.*lag_s"):
        OnlineAssociator.from_params(lag=3)
    # the rules are one frozen dataclass, validated once, shared by both modes
    with pytest.raises(ValueError, match="same_camera_gap_s"):
        AssociationRules(same_camera_gap_s=-1)
    rules = AssociationRules(threshold=0.3, transit_windows={"c1,c2": [0, 5]})
    assert rules.transit_windows[("c2", "c1")] == (0.0, 5.0)
    assert OnlineAssociator(rules=rules).rules is rules


def test_id_only_after_enough_evidence_and_same_person_joined():
    a, b = [1, 0, 0, 0], [0, 1, 0, 0]
    assoc = OnlineAssociator.from_params(threshold=0.3, min_s=1.0, lag_s=10)
    # 0.5 s = 6 frames: not enough yet.
    assert assoc.update(now_s=0.5, open_tracklets=[_tracklet("c1", 1, 0.0, 0.5, a)]) == []
    assert assoc.global_id("c1", 1) == -1
    revs = assoc.update(now_s=1.0, open_tracklets=[_tracklet("c1", 1, 0.0, 1.0, a)])
    assert [(r.camera, r.track_id, r.old_global_id, r.new_global_id) for r in revs] == [
        ("c1", 1, -1, 1)]
    # c1/1 ends; the same person shows up in c2, another person in c3.
    done = _tracklet("c1", 1, 0.0, 2.0, a)
    assoc.update(now_s=2.5, finished=[done])
    assoc.update(now_s=4.0, open_tracklets=[_tracklet("c2", 4, 3.0, 4.0, np.add(a, [0, .1, 0, 0])),
                                           _tracklet("c3", 2, 3.0, 4.0, b)])
    assert assoc.global_id("c2", 4) == 1
    assert assoc.global_id("c3", 2) not in (-1, 1)
    assert assoc.num_identities == 2 and assoc.num_multi_camera == 1


def _ambiguous_then_clear(change_at_s: float):
    """c2/5 first looks like nobody known, later (more evidence) like c1/1."""
    a, other = [1, 0, 0], [0.2, 1, 0]
    assoc = OnlineAssociator.from_params(threshold=0.3, min_s=1.0, lag_s=10)
    log = []
    log += assoc.update(now_s=1.0, open_tracklets=[_tracklet("c1", 1, 0.0, 1.0, a)])
    log += assoc.update(now_s=2.0, finished=[_tracklet("c1", 1, 0.0, 2.0, a)])
    log += assoc.update(now_s=4.0, open_tracklets=[_tracklet("c2", 5, 3.0, 4.0, other)])
    first = assoc.global_id("c2", 5)
    t = 5.0
    while t <= change_at_s + 1.0:
        vector = a if t >= change_at_s else other
        log += assoc.update(now_s=t, open_tracklets=[_tracklet("c2", 5, 3.0, t, vector)])
        t += 1.0
    return assoc, log, first


def test_revision_within_the_lag():
    assoc, log, first = _ambiguous_then_clear(change_at_s=8.0)
    assert first == 2 and assoc.global_id("c2", 5) == 1
    change = [r for r in log if r.old_global_id > 0]
    # Proposed at 8 s, confirmed by the second round in a row (switch_rounds=2) at 9 s.
    assert [(r.time_s, r.camera, r.track_id, r.old_global_id, r.new_global_id)
            for r in change] == [(9.0, "c2", 5, 2, 1)]
    assert _replay(log) == {("c1", 1): 1, ("c2", 5): 1}
    assert assoc.revisions == 1 and assoc.num_identities == 1


def test_no_revision_after_the_lag():
    # Assigned at t=4 s with a 10 s lag: evidence arriving at t=15 s comes too late.
    assoc, log, first = _ambiguous_then_clear(change_at_s=15.0)
    assert first == 2 and assoc.global_id("c2", 5) == 2
    assert all(r.old_global_id == -1 for r in log)
    assert assoc.num_identities == 2


def _flapping(params: dict, rounds: int = 8):
    """c2/5 sways around the threshold (0.40) from person a (c1/1) every round."""
    assoc = OnlineAssociator.from_params(threshold=0.40, min_s=1.0, lag_s=10, **params)
    log = assoc.update(now_s=2.0, finished=[_tracklet("c1", 1, 0.0, 2.0, _at(0.0))])
    for k in range(rounds):
        t = 4.0 + k
        distance = 0.37 if k % 2 == 0 else 0.43
        log += assoc.update(now_s=t, open_tracklets=[_tracklet("c2", 5, 3.0, t, _at(distance))])
    return assoc, log


def test_flapping_around_the_threshold_no_longer_changes_ids():
    churn, churn_log = _flapping(NO_HYSTERESIS)
    assert churn.revisions == 7  # joins, leaves, joins, ... every round
    steady, log = _flapping({})
    assert steady.revisions == 0
    # The first round put c2/5 with a (0.37 < 0.40); a swing to 0.43 is within the
    # margin (0.43 - 0.05 < 0.40), so it stays.
    assert [(r.camera, r.track_id, r.new_global_id) for r in log] == [("c1", 1, 1),
                                                                      ("c2", 5, 1)]
    assert steady.num_multi_camera == 1


def _between_two(params: dict, clear_from_s: float | None = None):
    """c2/5 alternates being slightly nearer a (c1/1) and b (c3/2); later maybe clearly b."""
    assoc = OnlineAssociator.from_params(threshold=0.40, min_s=1.0, lag_s=10, **params)
    log = assoc.update(now_s=2.0, finished=[_tracklet("c1", 1, 0.0, 2.0, _at(0.0, 0)),
                                            _tracklet("c3", 2, 0.0, 2.0, _at(0.0, 1))])
    t = 4.0
    while t <= 15.0:
        if clear_from_s is not None and t >= clear_from_s:
            v = _between(0.7, 0.05)
        else:  # 0.28 from one, 0.32 from the other (a and b are 1.0 apart)
            v = _between(0.28, 0.32) if int(t) % 2 == 0 else _between(0.32, 0.28)
        log += assoc.update(now_s=t, open_tracklets=[_tracklet("c2", 5, 3.0, t, v)])
        t += 1.0
    return assoc, log


def test_swaying_between_two_identities_keeps_the_first():
    churn, _ = _between_two(NO_HYSTERESIS)
    assert churn.revisions >= 8
    steady, log = _between_two({})
    assert steady.revisions == 0
    assert steady.global_id("c2", 5) == steady.global_id("c1", 1)  # nearer a at 4 s


def test_clear_change_goes_through_within_the_lag():
    # Assigned at 4 s (nearer a); from 9 s clearly b: proposed at 9 s and 10 s, made at
    # 10 s, well within the 10 s lag; nothing changes afterwards.
    assoc, log = _between_two({}, clear_from_s=9.0)
    changes = [(r.time_s, r.old_global_id, r.new_global_id) for r in log
               if r.old_global_id > 0]
    a, b = assoc.global_id("c1", 1), assoc.global_id("c3", 2)
    assert changes == [(10.0, a, b)]
    assert assoc.global_id("c2", 5) == b
    # The same change arriving after the lag (assigned at 4 s, frozen after 14 s) is
    # not made, and one confirmed only after the lag neither.
    late, late_log = _between_two({"switch_rounds": 2}, clear_from_s=14.0)
    assert late.revisions == 0


def test_the_last_round_makes_its_changes_at_once():
    assoc = OnlineAssociator.from_params(threshold=0.40, min_s=1.0, lag_s=10, switch_rounds=3)
    assoc.update(now_s=2.0, finished=[_tracklet("c1", 1, 0.0, 2.0, _at(0.0, 0)),
                                      _tracklet("c3", 2, 0.0, 2.0, _at(0.0, 1))])
    assoc.update(now_s=4.0, open_tracklets=[_tracklet("c2", 5, 3.0, 4.0, _between(0.2, 0.7))])
    a, b = assoc.global_id("c1", 1), assoc.global_id("c3", 2)
    assert assoc.global_id("c2", 5) == a
    # Clearly b from 5 s: one round proposes it (held back, 3 needed) ...
    assoc.update(now_s=5.0, open_tracklets=[_tracklet("c2", 5, 3.0, 5.0, _between(0.7, 0.05))])
    assert assoc.global_id("c2", 5) == a
    # ... and the end of the run, with no later round to confirm in, makes it.
    revs = assoc.finish(now_s=5.5, finished=[_tracklet("c2", 5, 3.0, 5.5, _between(0.7, 0.05))])
    assert [(r.track_id, r.old_global_id, r.new_global_id) for r in revs] == [(5, a, b)]


def test_constraints_come_before_confirmation():
    """A held-back change is made at once if staying would join two simultaneous tracks
    of one camera: c2/6 (new, nearly identical to a) takes a's id from c2/5."""
    assoc = OnlineAssociator.from_params(threshold=0.40, min_s=1.0, lag_s=10, switch_rounds=3)
    assoc.update(now_s=2.0, finished=[_tracklet("c1", 1, 0.0, 2.0, _at(0.0))])
    assoc.update(now_s=4.0, open_tracklets=[_tracklet("c2", 5, 3.0, 4.0, _at(0.2))])
    a = assoc.global_id("c1", 1)
    assert assoc.global_id("c2", 5) == a
    revs = assoc.update(now_s=5.0, open_tracklets=[_tracklet("c2", 5, 3.0, 5.0, _at(0.6)),
                                                   _tracklet("c2", 6, 3.5, 5.0, _at(0.02))])
    assert assoc.global_id("c2", 6) == a
    assert assoc.global_id("c2", 5) not in (-1, a)
    assert assoc.constraint_moves == 1
    assert [(r.track_id, r.old_global_id) for r in revs] == [(5, a), (6, -1)]


def test_open_tracks_of_one_camera_never_share_an_id():
    same = [1, 0, 0]
    assoc = OnlineAssociator.from_params(threshold=0.5, min_s=0.5)
    for t in np.arange(1.0, 6.0, 1.0):
        # c1/2 started after c1/1's last snapshot time but c1/1 is still open.
        assoc.update(now_s=t, open_tracklets=[_tracklet("c1", 1, 0.0, t - 0.3, same),
                                              _tracklet("c1", 2, 0.5, t, same)])
    assert assoc.global_id("c1", 1) != assoc.global_id("c1", 2)
    # A transit window that the gap violates also keeps two cameras apart.
    windowed = OnlineAssociator.from_params(threshold=0.5, min_s=0.5,
                                            transit_windows={"c1,c2": [0, 5]})
    windowed.update(now_s=1.0, finished=[_tracklet("c1", 1, 0.0, 1.0, same)])
    windowed.update(now_s=30.0, open_tracklets=[_tracklet("c2", 1, 29.0, 30.0, same)])
    assert windowed.global_id("c1", 1) != windowed.global_id("c2", 1)


def _simulate(seed: int, lag_s: float = 5.0, forget_after_s: float = 600.0):
    """People walking through three cameras; tracklets grow frame by frame and their
    embedding sharpens from noise towards the person's appearance."""
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(8, 16))
    people /= np.linalg.norm(people, axis=1, keepdims=True)
    visits = []  # (camera, track_id, start, end, person)
    track_ids = {"c1": 0, "c2": 0, "c3": 0}
    for person in range(len(people)):
        t = float(rng.uniform(0, 20))
        for camera in rng.permutation(list(track_ids))[:2]:
            track_ids[camera] += 1
            dur = float(rng.uniform(2, 6))
            visits.append((str(camera), track_ids[camera], t, t + dur, person))
            t += dur + float(rng.uniform(0.5, 4))
    assoc = OnlineAssociator.from_params(threshold=0.5, min_s=1.0, lag_s=lag_s,
                             forget_after_s=forget_after_s)
    log, seen, first_assigned = [], set(), {}
    for now in np.arange(0.5, 50.0, 0.5):
        open_, done = [], []
        for camera, tid, start, end, person in visits:
            if start > now or (camera, tid) in seen:
                continue
            progress = min(1.0, (now - start) / 3.0)
            vector = progress * people[person] + (1 - progress) * rng.normal(size=16) * 0.7
            t = _tracklet(camera, tid, start, min(end, now), vector, quality=0.8)
            if end <= now:
                done.append(t)
                seen.add((camera, tid))
            else:
                open_.append(t)
        for r in assoc.update(now_s=float(now), open_tracklets=open_, finished=done):
            first_assigned.setdefault((r.camera, r.track_id), r.time_s)
            log.append(r)
    log += assoc.finish(now_s=50.0)
    return assoc, log, first_assigned, visits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_revision_log_reconstructs_final_ids_and_respects_lag(seed):
    assoc, log, first_assigned, visits = _simulate(seed)
    final = _replay(log)
    assert set(final) == {(c, t) for c, t, *_ in visits}  # everyone got an id
    for key, gid in final.items():
        assert assoc.global_id(*key) == gid
    for r in log:
        if r.old_global_id > 0:
            assert r.time_s - first_assigned[(r.camera, r.track_id)] <= 5.0
    # Same-camera overlapping tracklets never end up under one id.
    full = [_tracklet(c, t, s, e, [1.0]) for c, t, s, e, _ in visits]
    forbid = cannot_link_matrix(full)
    ids = np.array([final[t.key] for t in full])
    assert not np.any(forbid & (ids[:, None] == ids[None, :]))


def test_revisions_csv_round_trip(tmp_path):
    _, log, _, _ = _simulate(0)
    path = tmp_path / "revisions.csv"
    with RevisionCsvWriter(path) as writer:
        writer.write(log[: len(log) // 2])
        writer.write(log[len(log) // 2:])
    assert len(read_revisions(path)) == len(log)
    assert final_global_ids(path) == _replay(log)
    assert path.read_text().splitlines()[0] == "time_s,camera,track_id,old_global_id,new_global_id"


def test_memory_stays_bounded_on_long_runs():
    assoc = OnlineAssociator.from_params(threshold=0.3, min_s=0.3, lag_s=5, forget_after_s=30)
    rng = np.random.default_rng(0)
    for k in range(400):  # one short tracklet per second for 400 s
        t = _tracklet("c1", k + 1, k, k + 0.5, rng.normal(size=8))
        assoc.update(now_s=k + 1.0, finished=[t])
    assert len(assoc._entries) <= 40
    assert assoc.num_identities >= 100  # forgotten identities still count


def test_builder_snapshots_do_not_close_tracks():
    builder = TrackletBuilder(camera_id="c1", min_length_s=0.2)
    emb = np.eye(4, dtype=np.float32)[:1]
    for i in range(4):
        tracks = Tracks(track_id=[7], xyxy=[[0, 0, 10, 40]], score=[0.9], det_index=[0],
                        embedding=emb)
        builder.update(i, i / FPS, tracks, tracks.xyxy, (100, 100))
        snaps = builder.snapshots(min_s=0.3)
        assert len(snaps) == (1 if i >= 2 else 0)
    assert len(snaps[0].frames) == 4 and snaps[0].embedding.shape == (4,)
    assert builder.num_open == 1
    assert [len(t.frames) for t in builder.finish()] == [4]


@pytest.mark.parametrize(("association", "message"), [
    ({"mode": "sometimes"}, "unknown association mode 'sometimes'; choose one of: offline, online"),
    ({"mode": "offline", "lag_s": 5}, "unknown key.*'lag_s' in association"),
    ({"mode": "online", "lag": 5}, "unknown key.*'lag' in association"),
])
def test_runner_validates_association_mode_and_keys_before_loading_models(
        tmp_path, association, message):
    from pipeline.config import config_from_dict
    from pipeline.runner import RunOptions, run

    config = config_from_dict({"cameras": [{"id": "c", "source": "missing.mp4"}],
                               "association": association}, base_dir=tmp_path, where="x.yaml")
    with pytest.raises(ValueError, match=message):
        run(config, tmp_path / "out", RunOptions(progress=False))
