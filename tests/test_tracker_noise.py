"""The tracker's measured box noise on real tracks (MOT17 gt made into detections).

The detections are the noise study's (``benchmarks.noise_study``): exact gt boxes at
level 0, boxes with a known jitter at the medium level. The estimator must find that
jitter from the tracks alone, exact boxes must come out as they went in, and jittery
ones must come out closer to the truth than they went in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.lib.noise import NoiseLevel, make_detections, read_seqinfo
from pipeline.evaluation.mot import read_mot_txt
from pipeline.geometry import iou_matrix
from pipeline.tracking import ByteTracker
from pipeline.tracking.noise import BoxNoiseEstimator, one_sigma_iou
from pipeline.types import Detections

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MOT17_09 = DATA / "mot" / "MOT17-train" / "MOT17-09-FRCNN"
pytestmark = pytest.mark.skipif(not MOT17_09.exists(), reason="shared MOT17 data not available")


def _track(tracker: ByteTracker, level: NoiseLevel) -> tuple[np.ndarray, np.ndarray]:
    """Run ``tracker`` over MOT17-09 detections of ``level``; returns the IoU of every
    reported box with its true (gt) box and of the detection it matched."""
    info = read_seqinfo(MOT17_09)
    gt = read_mot_txt(MOT17_09 / "gt" / "gt.txt")
    dets = make_detections(gt, level, seed=9, num_frames=info.num_frames,
                           image_size_wh=(info.width, info.height))
    truth = {(int(r[0]), int(r[1])): np.array([r[2], r[3], r[2] + r[4], r[3] + r[5]])
             for r in gt}
    bounds = np.searchsorted(dets.frame, np.arange(1, info.num_frames + 2))
    out_iou, det_iou = [], []
    for frame in range(1, info.num_frames + 1):
        a, b = bounds[frame - 1], bounds[frame]
        tracks = tracker.update(Detections(xyxy=dets.xyxy[a:b], score=dets.score[a:b]))
        for box, row in zip(tracks.xyxy, tracks.det_index, strict=True):
            person = int(dets.gt_id[a + row])
            if person < 0:
                continue  # a false positive has no true box
            true_box = truth[(frame, person)][None]
            out_iou.append(iou_matrix(box[None], true_box)[0, 0])
            det_iou.append(iou_matrix(dets.xyxy[a + row][None], true_box)[0, 0])
    return np.array(out_iou), np.array(det_iou)


def test_estimator_finds_the_injected_jitter():
    # Centre/log-size jitter of std 0.05 of the box size: 0.05 of the height for the
    # centre y and the height, 0.05 of the width (~0.4 height) for the centre x.
    jittery = ByteTracker()
    _track(jittery, NoiseLevel(jitter=0.05, score_std=0.05))
    cx, cy, _, h = jittery._noise.std
    assert 0.01 < cx < 0.035 and 0.035 < cy < 0.07 and 0.035 < h < 0.07
    exact = ByteTracker()
    _track(exact, NoiseLevel(score_std=0.05))
    assert (exact._noise.std[[0, 1, 3]] < 0.01).all()
    # the filter then trusts the exact boxes far more than its fixed model (1/20)
    assert (exact.measurement_noise[[0, 1, 3]] < 0.02).all()


def test_exact_boxes_come_out_unchanged_and_jittery_ones_closer_to_the_truth():
    level0 = NoiseLevel(score_std=0.05)
    out_iou, _ = _track(ByteTracker(), level0)
    assert np.median(out_iou) > 0.99 and np.mean(out_iou) > 0.97
    # the fixed model (before this change) pulled exact boxes off
    fixed_iou, _ = _track(ByteTracker(adaptive_noise=False), level0)
    assert np.mean(fixed_iou) < np.mean(out_iou) - 0.01

    jitter = NoiseLevel(jitter=0.08, score_std=0.05)
    out_iou, det_iou = _track(ByteTracker(), jitter)
    assert np.mean(out_iou) > np.mean(det_iou) + 0.02
    raw_iou, raw_det_iou = _track(ByteTracker(output_box="detection"), jitter)
    np.testing.assert_allclose(raw_iou, raw_det_iou)


def test_estimator_separates_jitter_from_motion_ignores_outliers_and_resets():
    rng = np.random.default_rng(0)
    est = BoxNoiseEstimator(window=4000, min_samples=500)
    n = 3000
    heights = rng.uniform(50, 300, n)
    # Four boxes per sample: a walk whose velocity changes by 2 % of the height per
    # frame (more than the jitter: a person turning at a low frame rate) ...
    velocity = rng.normal(0, 0.05, (n, 1, 4)) + np.cumsum(rng.normal(0, 0.02, (n, 4, 4)),
                                                          axis=1)
    truth = np.cumsum(velocity, axis=1) * heights[:, None, None]
    truth[:, :, 3] += heights[:, None]
    # ... seen with white noise of 1 % of the height ...
    boxes = truth + rng.normal(0, 0.01, (n, 4, 4)) * heights[:, None, None]
    # ... and 10 % gross errors (a cut-off box, a wrong match).
    boxes[:300, 3] += rng.choice([-1, 1], (300, 4)) * 0.5 * heights[:300, None]
    assert est.refresh() is None and not est.ready
    est.observe(boxes)
    std = est.refresh()
    np.testing.assert_allclose(std[[0, 1, 3]], 0.01, rtol=0.25)
    est.reset()
    assert est.std is None and not est.ready
    with pytest.raises(ValueError):
        BoxNoiseEstimator(window=10, min_samples=20)


def test_tracker_reset_forgets_the_noise_and_options_are_checked():
    tracker = ByteTracker()
    _track(tracker, NoiseLevel(score_std=0.05))
    assert tracker.measurement_noise is not None
    tracker.reset()
    assert tracker.measurement_noise is None
    with pytest.raises(ValueError, match="output_box"):
        ByteTracker(output_box="kalman")
    with pytest.raises(ValueError, match="noise_gain"):
        ByteTracker(noise_gain=0)


def test_one_sigma_iou():
    assert one_sigma_iou(np.zeros(4), 0.4) == pytest.approx(1.0)
    # centre 10% of the height off vertically: overlap 0.9 of the area, IoU 0.9 / 1.1
    assert one_sigma_iou(np.array([0.0, 0.1, 0.0, 0.0]), 0.4) == pytest.approx(0.9 / 1.1)
    # the same offset across a box 0.4 high-wide: 0.1 / 0.4 of its width
    assert one_sigma_iou(np.array([0.1, 0.0, 0.0, 0.0]), 0.4) == pytest.approx(0.75 / 1.25)
    ious = [one_sigma_iou(np.full(4, s), 0.4) for s in (0.01, 0.03, 0.06, 0.12, 0.3)]
    assert ious == sorted(ious, reverse=True) and ious[-1] < 0.5


def _walk(jitter: float, *, frames: int = 400, jump_iou: float = 0.16,
          noise_gate: bool = True) -> tuple[ByteTracker, bool]:
    """One person (40x100 px) walking right at 2 px/frame, boxes jittered by ``jitter``
    of their size, then one exact box ``dx`` too far right, where ``dx`` gives IoU
    ``jump_iou`` with the true box. Returns the tracker and whether that box continued
    the person's track."""
    rng = np.random.default_rng(3)
    tracker = ByteTracker(noise_gate=noise_gate)
    w, h = 40.0, 100.0
    for frame in range(frames + 1):
        cx, cy = 100.0 + 2.0 * frame, 300.0
        if frame == frames:  # (w - dx) / (w + dx) = jump_iou
            cx += w * (1 - jump_iou) / (1 + jump_iou)
            ww, hh = w, h
        else:
            ex, ey, ew, eh = rng.normal(0.0, jitter, 4)
            cx, cy = cx + ex * w, cy + ey * h
            ww, hh = w * np.exp(ew), h * np.exp(eh)
        box = np.array([[cx - ww / 2, cy - hh / 2, cx + ww / 2, cy + hh / 2]], np.float32)
        tracks = tracker.update(Detections(xyxy=box, score=np.ones(1, np.float32)))
    return tracker, list(tracks.track_id) == [1]


def test_first_stage_gate_widens_with_the_measured_jitter():
    exact, kept = _walk(0.0)
    assert exact.first_stage_gate == pytest.approx(0.8, abs=0.005)
    assert not kept  # IoU 0.16 is below the 0.2 that match_thresh 0.8 asks
    wobbly, kept = _walk(0.06)
    assert 0.835 < wobbly.first_stage_gate < 0.86  # the same person, a wobbly detector
    assert kept
    assert wobbly.describe()["first_stage_gate"] == pytest.approx(wobbly.first_stage_gate,
                                                                  abs=1e-4)
    fixed, kept = _walk(0.06, noise_gate=False)
    assert fixed.first_stage_gate == 0.8 and not kept


def test_coasting_between_detections_keeps_ids_and_predicts_the_boxes():
    """``detector.every: 2``: the tracker sees MOT17-09's exact boxes on every other
    frame and coasts on the rest. Ids carry across the coasted frames, their boxes are
    the gt's to within a few percent, and no box is reported for a track the last
    update did not match."""
    info = read_seqinfo(MOT17_09)
    gt = read_mot_txt(MOT17_09 / "gt" / "gt.txt")
    dets = make_detections(gt, NoiseLevel(score_std=0.05), seed=9,
                           num_frames=info.num_frames, image_size_wh=(info.width, info.height))
    truth = {(int(r[0]), int(r[1])): np.array([r[2], r[3], r[2] + r[4], r[3] + r[5]])
             for r in gt}
    bounds = np.searchsorted(dets.frame, np.arange(1, info.num_frames + 2))
    tracker = ByteTracker(fps=info.fps)
    person_of: dict[int, int] = {}  # track id -> the gt person of its last update
    coasted_iou, switches, shown = [], 0, 0
    for frame in range(1, info.num_frames + 1):
        a, b = bounds[frame - 1], bounds[frame]
        if frame % 2:
            tracks = tracker.update(Detections(xyxy=dets.xyxy[a:b], score=dets.score[a:b]))
            for tid, row in zip(tracks.track_id, tracks.det_index, strict=True):
                person = int(dets.gt_id[a + row])
                switches += person_of.get(int(tid), person) != person
                person_of[int(tid)] = person
        else:
            tracks = tracker.coast()
            assert (tracks.det_index == -1).all() and tracks.embedding.shape[1] == 0
            assert set(tracks.track_id.tolist()) <= set(person_of)
            for tid, box in zip(tracks.track_id, tracks.xyxy, strict=True):
                true_box = truth.get((frame, person_of[int(tid)]))
                if true_box is not None:  # the person may have left on this frame
                    coasted_iou.append(iou_matrix(box[None], true_box[None])[0, 0])
            shown += len(tracks)
    assert shown > 2400 and switches <= 10  # measured: 2,610 rows, 6 switches
    assert np.median(coasted_iou) > 0.95 and np.mean(coasted_iou) > 0.9  # 0.973, 0.960
