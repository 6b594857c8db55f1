"""Embedding scheduler: births, ambiguity and staleness decide which detections are embedded."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.reid.schedule import EmbeddingScheduler
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
