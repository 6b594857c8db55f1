"""CMC / mAP against hand-worked examples and a naive per-query reference."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.reid.metrics import cosine_distance, evaluate_rank


def test_hand_worked_3x4() -> None:
    # Gallery: g0 (id 1, cam 2), g1 (id 2, cam 2), g2 (id 1, cam 1), g3 (id 1, cam 2).
    g_pids, g_cams = np.array([1, 2, 1, 1]), np.array([2, 2, 1, 2])
    # Queries, all camera 1: id 1, id 2, id 3 (id 3 is absent from the gallery).
    q_pids, q_cams = np.array([1, 2, 3]), np.array([1, 1, 1])
    dist = np.array([
        [0.30, 0.10, 0.20, 0.40],  # q0: g2 excluded (same id+camera) -> g1, g0*, g3*
        [0.50, 0.05, 0.10, 0.30],  # q1: g1* first
        [0.10, 0.20, 0.30, 0.40],  # q2: no true match -> skipped
    ])
    res = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=4)
    # q0: matches at ranks 2 and 3 -> AP = (1/2 + 2/3) / 2 = 7/12; q1: rank 1, AP = 1.
    assert res.num_valid == 2
    np.testing.assert_allclose(res.cmc, [0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(res.ap[:2], [7 / 12, 1.0])
    assert np.isnan(res.ap[2])
    assert res.mAP == pytest.approx((7 / 12 + 1.0) / 2)
    assert res.rank(1) == 0.5


def test_same_camera_same_id_is_excluded_not_counted() -> None:
    # The only same-id item shares the query camera: the query must be skipped.
    res = evaluate_rank(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([1, 2]),
                        np.array([1, 2]), np.array([1, 1]), np.array([1, 2]), max_rank=2)
    assert res.num_valid == 1
    np.testing.assert_allclose(res.cmc, [1.0, 1.0])
    with pytest.raises(ValueError, match="no query"):
        evaluate_rank(np.zeros((1, 1)), np.array([1]), np.array([1]), np.array([1]),
                      np.array([1]))


def _naive(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    cmcs, aps = [], []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        match = (g_pids[order] == q_pids[i])[keep]
        if not match.any():
            continue
        first = int(np.argmax(match))
        cmcs.append([first <= k for k in range(max_rank)])
        positions = np.flatnonzero(match)
        aps.append(np.mean([(j + 1) / (p + 1) for j, p in enumerate(positions)]))
    return np.mean(cmcs, axis=0), float(np.mean(aps))


def test_matches_naive_reference_on_random_data() -> None:
    rng = np.random.default_rng(0)
    q_pids, g_pids = rng.integers(0, 15, 40), rng.integers(0, 15, 120)
    q_cams, g_cams = rng.integers(0, 3, 40), rng.integers(0, 3, 120)
    dist = cosine_distance(rng.normal(size=(40, 8)), rng.normal(size=(120, 8)))
    res = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20)
    cmc, m_ap = _naive(dist, q_pids, g_pids, q_cams, g_cams, 20)
    np.testing.assert_allclose(res.cmc, cmc)
    assert res.mAP == pytest.approx(m_ap)


def test_cosine_distance_range() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(cosine_distance(a, -a), [[2.0, 1.0], [1.0, 2.0]])
