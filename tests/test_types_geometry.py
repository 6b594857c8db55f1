"""Stage-boundary types validate shapes; geometry helpers on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.geometry import (
    clip_xyxy,
    ioa_matrix,
    iou_matrix,
    linear_assignment,
    tlwh_to_xyxy,
    xyah_to_xyxy,
    xyxy_to_tlwh,
    xyxy_to_xyah,
)
from pipeline.types import Detections, Frame, Tracks


def test_detections_defaults_and_selection():
    d = Detections(xyxy=[[0, 0, 10, 20], [5, 5, 15, 25]], score=[0.9, 0.3])
    assert d.xyxy.dtype == np.float32 and d.embedding.shape == (2, 0)
    assert not d.has_embedding and len(d) == 2
    high = d[d.score > 0.5]
    assert len(high) == 1 and high.embedding.shape == (1, 0)
    empty = Detections.empty(dim=8)
    assert empty.xyxy.shape == (0, 4) and empty.embedding.shape == (0, 8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(xyxy=np.zeros((2, 5)), score=np.zeros(2)), r"\(N, 4\)"),
        (dict(xyxy=np.zeros((2, 4)), score=np.zeros(3)), "score has 3 rows"),
        (dict(xyxy=np.zeros((2, 4)), score=np.zeros(2), embedding=np.ones((3, 4))),
         "embedding has 3 rows"),
    ],
)
def test_detections_reject_misaligned_rows(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Detections(**kwargs)


def test_frame_and_tracks_validation():
    with pytest.raises(ValueError, match="uint8"):
        Frame(camera_id="c", index=0, timestamp_s=0.0, image_bgr=np.zeros((4, 4), np.uint8))
    frame = Frame(camera_id="c", index=0, timestamp_s=0.0,
                  image_bgr=np.zeros((4, 6, 3), np.uint8))
    assert frame.size_wh == (6, 4)
    t = Tracks(track_id=[3], xyxy=[[0, 0, 1, 1]], score=[0.5], det_index=[0])
    assert t.embedding.shape == (1, 0) and len(Tracks.empty()) == 0
    with pytest.raises(ValueError, match="det_index"):
        Tracks(track_id=[1, 2], xyxy=np.zeros((2, 4)), score=[1, 1], det_index=[0])


def test_box_conversions_round_trip():
    xyxy = np.array([[10, 20, 40, 100], [0, 0, 5, 5]], np.float32)
    np.testing.assert_allclose(tlwh_to_xyxy(xyxy_to_tlwh(xyxy)), xyxy)
    np.testing.assert_allclose(xyah_to_xyxy(xyxy_to_xyah(xyxy)), xyxy, atol=1e-4)
    np.testing.assert_allclose(xyxy_to_xyah(xyxy)[0], [25, 60, 30 / 80, 80])
    np.testing.assert_allclose(clip_xyxy([[-5, -5, 50, 50]], 20, 10), [[0, 0, 20, 10]])


def test_iou_and_ioa_hand_worked():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    # overlap 5x10 = 50; union 150
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0.0, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(ioa_matrix(a, b), [[0.5, 0.0, 1.0]], rtol=1e-6)
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_linear_assignment_is_optimal_and_gated():
    cost = np.array([[0.1, 0.2], [0.15, 0.9], [np.inf, 0.95]])
    matches, rows, cols = linear_assignment(cost, max_cost=0.5)
    # greedy would take (0,0) and leave row 1 unmatched; the optimum is (0,1),(1,0)
    assert sorted(map(tuple, matches.tolist())) == [(0, 1), (1, 0)]
    assert rows.tolist() == [2] and cols.tolist() == []
    m, r, c = linear_assignment(np.full((2, 2), 0.8), max_cost=0.5)
    assert len(m) == 0 and r.tolist() == [0, 1] and c.tolist() == [0, 1]
    m, r, c = linear_assignment(np.zeros((0, 3)), max_cost=0.5)
    assert m.shape == (0, 2) and c.tolist() == [0, 1, 2]
