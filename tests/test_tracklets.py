"""TrackletBuilder and observation-quality tests (synthetic, hermetic)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tracking import ByteTracker, TrackletBuilder, quality_scores
from pipeline.types import Detections
from tests.conftest import make_tracks

IMAGE_WH = (1920, 1080)




def test_quality_ordering():
    big = [500, 200, 600, 500]  # 300 px tall, alone
    small = [1000, 400, 1020, 450]  # 50 px tall
    occluder = [1005, 390, 1030, 460]  # covers most of the small box
    at_border = [0, 200, 100, 500]  # same size as big, touching the left border
    boxes = np.array([big, small, occluder, at_border], np.float32)
    q = quality_scores(
        boxes[[0, 1, 3]], np.array([0.95, 0.5, 0.95]), boxes, IMAGE_WH,
        self_index=np.array([0, 1, 3]),
    )
    assert q.dtype == np.float32 and q.shape == (3,)
    assert ((q >= 0) & (q <= 1)).all()
    assert q[0] > q[2] > q[1]
    assert q[0] == pytest.approx(0.95)  # large, unoccluded, inside: only the score
    # Without self_index, the box's own copy in all_boxes must not count as occlusion.
    q_auto = quality_scores(boxes[[0, 1, 3]], np.array([0.95, 0.5, 0.95]), boxes, IMAGE_WH)
    np.testing.assert_allclose(q_auto, q)
    assert quality_scores(np.zeros((0, 4)), np.zeros(0), boxes, IMAGE_WH).shape == (0,)


def test_embedding_cap_keeps_best_observations_and_pools_normalised():
    builder = TrackletBuilder(camera_id="cam1", max_embeddings=3, min_length_s=0.1)
    good = np.array([[1.0, 0.0, 0.0]])
    poor = np.array([[0.0, 1.0, 0.0]])
    frame = 0
    # Interleave: 3 large confident views and 10 small ones, small ones last too.
    for i in range(13):
        is_good = i in (2, 6, 9)
        box = [100, 100, 200, 400] if is_good else [100, 100, 110, 130]
        emb = good if is_good else poor
        builder.update(frame, frame / 10, make_tracks([7], [box], emb=emb), np.array([box]),
                       IMAGE_WH)
        frame += 1
    acc = builder._open[7]
    assert len(acc.heap) == 3  # bounded per track
    (tracklet,) = builder.finish()
    assert tracklet.key == ("cam1", 7)
    assert len(tracklet.frames) == 13 and tracklet.xyxy.shape == (13, 4)
    np.testing.assert_allclose(tracklet.embedding, good[0], atol=1e-6)
    assert tracklet.quality == pytest.approx(0.9)


def test_pooled_embedding_is_quality_weighted_and_unit_norm():
    rng = np.random.default_rng(0)
    builder = TrackletBuilder(camera_id="c", max_embeddings=10, min_length_s=0.1)
    for f in range(8):
        emb = rng.normal(size=(2, 32)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        boxes = [[100, 100, 160, 300], [400, 100, 460, 300]]
        builder.update(f, f * 0.1, make_tracks([1, 2], boxes, emb=emb), np.array(boxes), IMAGE_WH)
    out = builder.finish()
    assert [t.track_id for t in out] == [1, 2]
    for t in out:
        assert t.embedding.shape == (32,) and t.embedding.dtype == np.float32
        assert np.linalg.norm(t.embedding) == pytest.approx(1.0, abs=1e-5)
        assert 0.0 < t.quality <= 1.0


def test_min_length_finished_and_no_embeddings():
    builder = TrackletBuilder(camera_id="c", min_length_s=0.3, finish_after_s=1.0)
    box = [[10, 10, 50, 110]]
    for f in range(5):
        ids = [1, 2] if f < 2 else [1]  # track 2 lives 2 frames: too short
        boxes = np.array(box * len(ids))
        builder.update(f, float(f), make_tracks(ids, boxes), boxes, IMAGE_WH)
    builder.update(5, 5.0, make_tracks([3], box), np.array(box), IMAGE_WH)
    # At t=5: track 2 last seen t=1 (idle 4 s) and track 1 at t=4 (idle 1 s, not > 1).
    assert builder.finished() == []  # track 2 closed but dropped as too short
    assert builder.num_open == 2
    done = builder.finished(older_than_s=0.5)
    assert [t.track_id for t in done] == [1]
    assert done[0].embedding.shape == (0,) and done[0].quality == 0.0
    np.testing.assert_array_equal(done[0].frames, np.arange(5))
    assert builder.finish() == []  # track 3: one frame < min_length_s
    assert builder.num_open == 0


def test_tracker_to_tracklets_end_to_end():
    tracker = ByteTracker()
    builder = TrackletBuilder(camera_id="cam2", min_length_s=0.5)
    rng = np.random.default_rng(3)
    base = np.eye(16, dtype=np.float32)[:2]
    for f in range(20):
        boxes = np.array([[100 + 4 * f, 100, 160 + 4 * f, 300], [900, 200, 960, 400]], np.float32)
        emb = base + rng.normal(0, 0.05, base.shape).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        dets = Detections(xyxy=boxes, score=np.array([0.9, 0.8]), embedding=emb)
        builder.update(f, f / 10, tracker.update(dets), dets.xyxy, IMAGE_WH)
    out = builder.finish()
    assert [t.track_id for t in out] == [1, 2]
    for t, b in zip(out, base, strict=True):
        assert len(t.frames) == 20
        assert float(t.embedding @ b) > 0.95


@pytest.mark.parametrize("fps, frames", [(2, 1), (10, 5), (30, 15)])
def test_min_length_is_seconds_at_the_camera_rate(fps, frames):
    """``min_length_s`` 0.5: a track must be seen for half a second, at any rate."""
    builder = TrackletBuilder(camera_id="c", fps=fps)
    assert builder.min_length == frames
    for f in range(frames):
        ids = [1, 2] if f < frames - 1 else [1]
        tracks = make_tracks(ids, [[10, 10, 50, 110], [200, 10, 240, 110]][:len(ids)])
        builder.update(f, f / fps, tracks, tracks.xyxy, (640, 480))
    finished = builder.finish()
    assert [t.track_id for t in finished] == [1]
    assert finished[0].observed_s == pytest.approx(frames / fps if frames > 1 else 0.0)
    assert builder.short_track_ids == ([2] if frames > 1 else [])
