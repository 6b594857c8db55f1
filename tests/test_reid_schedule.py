"""Embedding scheduler: births, ambiguity and staleness decide which detections are embedded."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.reid.policy import EmbeddingPolicy, PolicyEmbedder
from pipeline.reid.schedule import AMBIGUOUS, BIRTH, REFRESH, SKIP, EmbeddingScheduler
from pipeline.tracking import ByteTracker
from pipeline.types import Detections
from tests.conftest import DATA

PETS_GT = DATA / "video" / "pets09_s2l1" / "gt" / "gt.txt"


def _dets(boxes) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(xyxy=boxes, score=np.full(len(boxes), 0.9, np.float32))


def _frame(scheduler, tracker, boxes):
    """One frame: select, 'embed' the selected rows with a unit vector, track, observe."""
    dets = _dets(boxes)
    chosen = scheduler.select(dets, np.ones(len(dets), bool))
    emb = np.zeros((len(dets), 4), np.float32)
    emb[chosen, 0] = 1.0
    tracks = tracker.update(Detections(xyxy=dets.xyxy, score=dets.score, embedding=emb))
    scheduler.observe(tracks)
    return chosen, tracks


def _step(scheduler, tracker, boxes):
    return _frame(scheduler, tracker, boxes)[0]


def test_refresh_one_embeds_everything_eligible():
    sched = EmbeddingScheduler(refresh_frames=1)
    dets = _dets([[0, 0, 10, 30], [100, 0, 110, 30]])
    eligible = np.array([True, False])
    assert sched.select(dets, eligible).tolist() == [True, False]


def test_isolated_track_is_embedded_every_nth_frame_and_births_always():
    sched, tracker = EmbeddingScheduler(refresh_frames=4), ByteTracker(min_hits=1)
    chosen = [_step(sched, tracker, [[100 + 2 * f, 100, 140 + 2 * f, 200]])[0]
              for f in range(13)]
    # Frame 0 is a birth; afterwards every 4th frame refreshes the appearance.
    assert chosen == [True, False, False, False, True, False, False, False, True,
                      False, False, False, True]
    # A newcomer far away is embedded at once, the settled track keeps its rhythm.
    both = _step(sched, tracker, [[126, 100, 166, 200], [400, 100, 440, 200]])
    assert both.tolist() == [False, True]


def test_overlapping_people_are_always_embedded():
    sched, tracker = EmbeddingScheduler(refresh_frames=10), ByteTracker(min_hits=1)
    for f in range(6):
        # Two people 20 px apart (IoU ~0.33): ambiguous, so both embedded every frame.
        chosen = _step(sched, tracker, [[100 + f, 100, 140 + f, 200],
                                        [120 - f, 100, 160 - f, 200]])
        assert chosen.all(), f"frame {f}"


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="refresh_frames"):
        EmbeddingScheduler(refresh_frames=0)
    with pytest.raises(ValueError, match="ambiguity_iou"):
        EmbeddingScheduler(continuation_iou=0.3, ambiguity_iou=0.3)


@pytest.mark.skipif(not PETS_GT.exists(), reason="shared PETS09 data not available")
@pytest.mark.parametrize("refresh", [3, 8])
def test_pets09_no_track_goes_longer_than_refresh_without_appearance(refresh):
    """On the real PETS09-S2L1 ground-truth boxes: every confirmed track is embedded at
    least every ``refresh`` frames it is shown, and the schedule saves real work."""
    gt = np.loadtxt(PETS_GT, delimiter=",")
    sched, tracker = EmbeddingScheduler(refresh_frames=refresh), ByteTracker()
    last_embedded: dict[int, int] = {}
    worst_gap, chosen_total, total = 0, 0, 0
    for frame in np.unique(gt[:, 0]).astype(int):
        rows = gt[gt[:, 0] == frame]
        chosen, tracks = _frame(sched, tracker,
                                np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]])
        chosen_total += int(chosen.sum())
        total += len(chosen)
        for tid, row in zip(tracks.track_id.tolist(), tracks.embedding, strict=True):
            if row.any():
                last_embedded[tid] = frame
            elif tid in last_embedded:
                worst_gap = max(worst_gap, frame - last_embedded[tid])
    assert worst_gap < refresh
    # People cross and walk in groups in PETS09, so far more than 1/refresh is embedded,
    # but a clear share of detections is skipped.
    assert 1.0 / refresh < chosen_total / total < 0.9


# ------------------------------------------------------------------------ crop budget
def test_priorities_name_the_reason():
    sched, tracker = EmbeddingScheduler(refresh_frames=3), ByteTracker(min_hits=1)
    apart = [[100, 100, 140, 200], [400, 100, 440, 200]]
    _step(sched, tracker, apart)  # both born and embedded
    priority, age = sched.priorities(_dets(apart), np.ones(2, bool))
    assert priority.tolist() == [SKIP, SKIP]  # fresh appearance
    _step(sched, tracker, apart)
    _step(sched, tracker, apart)
    # Two frames without embedding: due again (age 3 >= refresh 3); a newcomer is a birth;
    # a box between the first two people's is crowded by nobody eligible but overlaps
    # person 1: both become ambiguous.
    boxes = [[100, 100, 140, 200], [400, 100, 440, 200], [700, 100, 740, 200],
             [410, 100, 450, 200]]
    priority, age = sched.priorities(_dets(boxes), np.array([True, True, True, True]))
    assert priority.tolist() == [REFRESH, AMBIGUOUS, BIRTH, AMBIGUOUS]
    assert age[0] == 3 and age[2] == 0
    not_eligible = sched.priorities(_dets(boxes), np.array([True, False, True, True]))[0]
    assert not_eligible[1] == SKIP


class _CountingEmbedder:
    """Stands in for the CNN: a unit vector per crop, and how many crops it saw."""

    embedding_dim = 4

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, images, boxes):
        self.calls.append(sum(len(b) for b in boxes))
        return [np.tile(np.eye(4, dtype=np.float32)[:1], (len(b), 1)) for b in boxes]


def _tick(policy, trackers, boxes_per_camera):
    cams = list(trackers)
    images = [np.zeros((300, 1000, 3), np.uint8)] * len(cams)
    dets = policy(cams, images, [_dets(b) for b in boxes_per_camera])
    chosen = []
    for cid, d in zip(cams, dets, strict=True):
        policy.observe(cid, trackers[cid].update(d))
        chosen.append(np.any(d.embedding != 0, axis=1))
    return chosen


def test_budget_puts_refreshes_off_never_births():
    embedder = _CountingEmbedder()
    trackers = {"a": ByteTracker(min_hits=1), "b": ByteTracker(min_hits=1)}
    policy = PolicyEmbedder(embedder=embedder, camera_ids=list(trackers),
                            policy=EmbeddingPolicy(refresh_s=0.2, max_crops_per_frame=1))
    people = [[[100 + 150 * i, 100, 140 + 150 * i, 200] for i in range(3)]] * 2
    # Tick 0: six births in two frames, over the budget of 2: all embedded anyway.
    assert [c.tolist() for c in _tick(policy, trackers, people)] == [[True] * 3] * 2
    assert policy.deferred == 0
    # Tick 1: fresh appearances, nothing to do. Tick 2: six refreshes due, budget 2.
    assert not any(c.any() for c in _tick(policy, trackers, people))
    chosen = _tick(policy, trackers, people)
    assert sum(int(c.sum()) for c in chosen) == 2 and policy.deferred == 4
    # Tick 3: a birth takes one of the two crops; the other goes to one of the four put
    # off (now the stalest), not to the two refreshed at tick 2.
    newcomer = [people[0] + [[700, 100, 740, 200]], people[1]]
    later = _tick(policy, trackers, newcomer)
    assert later[0][3]  # the birth
    done_before = np.concatenate(chosen)
    done_now = np.concatenate([later[0][:3], later[1]])
    assert not (done_before & done_now).any() and done_now.sum() == 1
    assert embedder.calls[-1] == 2


def test_no_budget_is_the_plain_schedule():
    trackers = {"a": ByteTracker(min_hits=1)}
    plain = PolicyEmbedder(embedder=_CountingEmbedder(), camera_ids=["a"],
                           policy=EmbeddingPolicy(refresh_s=0.3))
    trackers_b = {"a": ByteTracker(min_hits=1)}
    sched = EmbeddingScheduler(refresh_frames=3)
    for f in range(8):
        boxes = [[100 + 3 * f, 100, 140 + 3 * f, 200], [130, 100, 170, 200]]
        got = _tick(plain, trackers, [boxes])[0]
        want = _step(sched, trackers_b["a"], boxes)
        assert got.tolist() == want.tolist()


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="max_crops_per_frame"):
        EmbeddingPolicy(max_crops_per_frame=0)
