"""YOLO person detector on real frames: PETS09-S2L1 and MOT17 (ground truth at IoU 0.5).

Bounds were set below values measured with yolov8n_int8.tflite (conf 0.25):
PETS09 frames 150/200/250/400 recall 24/24, precision 24/27; MOT17-02 frames 1-4
recall 0.44 and MOT17-04 frames 1-8 recall 0.72 of persons at least half visible,
precision 0.71 / 0.84 against all annotated persons.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from pipeline.assembly import build_component
from pipeline.detection import DETECTORS, YoloDetector
from pipeline.detection.yolo import _to_detections
from pipeline.geometry import iou_matrix, linear_assignment, tlwh_to_xyxy
from tests.conftest import DATA

WEIGHTS = DATA / "weights"
PETS = DATA / "video" / "pets09_s2l1"
MOT = DATA / "mot" / "MOT17-mini" / "train"
PETS_FRAMES = (150, 200, 250, 400)  # 1-based, = gt frame numbers


@pytest.fixture(scope="module")
def detector() -> YoloDetector:
    return YoloDetector(weights=WEIGHTS / "yolov8n_int8.tflite")


@pytest.fixture(scope="module")
def pets_frames() -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(PETS / "vtest.avi"))
    frames = {}
    for n in range(1, max(PETS_FRAMES) + 1):
        if n in PETS_FRAMES:
            ok, frames[n] = capture.read()
        else:
            ok = capture.grab()
        assert ok, f"could not decode frame {n}"
    capture.release()
    return frames


def _matches(pred_xyxy: np.ndarray, gt_xyxy: np.ndarray) -> int:
    matches, _, _ = linear_assignment(1.0 - iou_matrix(pred_xyxy, gt_xyxy), max_cost=0.5)
    return len(matches)


def _mot_gt(sequence: str) -> np.ndarray:
    gt = np.loadtxt(MOT / sequence / "gt" / "gt.txt", delimiter=",")
    return gt[(gt[:, 6] == 1) & (gt[:, 7] == 1)]  # evaluated rows, class 1 = pedestrian


def _check_inside(dets, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    assert dets.xyxy.dtype == np.float32 and dets.score.dtype == np.float32
    assert (dets.xyxy[:, :2] >= 0).all() and (dets.xyxy[:, 2] <= w).all()
    assert (dets.xyxy[:, 3] <= h).all()
    assert (dets.xyxy[:, 2:] > dets.xyxy[:, :2]).all()
    assert ((dets.score >= 0.25) & (dets.score <= 1)).all()
    assert dets.embedding.shape == (len(dets), 0)


def test_pets_recall_and_precision(detector, pets_frames):
    gt = np.loadtxt(PETS / "gt" / "gt.txt", delimiter=",")
    images = [pets_frames[n] for n in PETS_FRAMES]
    results = detector.detect(images)
    hit = n_gt = n_det = 0
    for n, image, dets in zip(PETS_FRAMES, images, results, strict=True):
        _check_inside(dets, image)
        boxes = tlwh_to_xyxy(gt[gt[:, 0] == n][:, 2:6])
        hit += _matches(dets.xyxy, boxes)
        n_gt += len(boxes)
        n_det += len(dets)
    assert n_gt == 24
    assert hit / n_gt >= 0.85
    assert hit / n_det >= 0.7


@pytest.mark.parametrize(("sequence", "min_recall"), [("MOT17-02-FRCNN", 0.35),
                                                      ("MOT17-04-FRCNN", 0.55)])
def test_mot17_recall_of_visible_people(detector, sequence, min_recall):
    gt = _mot_gt(sequence)
    files = sorted((MOT / sequence / "img1").glob("*.jpg"))
    images = [cv2.imread(str(f)) for f in files]
    results = detector.detect(images)
    hit_visible = n_visible = hit_all = n_det = 0
    for n, (image, dets) in enumerate(zip(images, results, strict=True), start=1):
        _check_inside(dets, image)
        rows = gt[gt[:, 0] == n]
        hit_all += _matches(dets.xyxy, tlwh_to_xyxy(rows[:, 2:6]))
        visible = tlwh_to_xyxy(rows[rows[:, 8] >= 0.5][:, 2:6])
        hit_visible += _matches(dets.xyxy, visible)
        n_visible += len(visible)
        n_det += len(dets)
    assert hit_visible / n_visible >= min_recall
    assert hit_all / n_det >= 0.55


def test_list_call_equals_single_images(detector, pets_frames):
    images = [pets_frames[150], pets_frames[400], cv2.resize(pets_frames[200], (960, 540))]
    singles = [detector.detect([image])[0] for image in images]
    listed = YoloDetector(weights=WEIGHTS / "yolov8n_int8.tflite", batch=True)
    listed.list_call = True  # force one ultralytics call with the whole list
    for detections in (detector.detect(images), listed.detect(images)):
        for one, many in zip(singles, detections, strict=True):
            np.testing.assert_allclose(one.xyxy, many.xyxy, atol=1e-3)
            np.testing.assert_allclose(one.score, many.score, atol=1e-5)
    assert detector.detect([]) == []


def test_only_person_class_is_kept():
    result = SimpleNamespace(boxes=SimpleNamespace(
        xyxy=torch.tensor([[10.0, 10.0, 50.0, 90.0], [5.0, 5.0, 40.0, 40.0], [-5.0, 0, 30, 700]]),
        conf=torch.tensor([0.9, 0.8, 0.7]),
        cls=torch.tensor([0.0, 2.0, 0.0]),
    ))
    dets = _to_detections(result, np.zeros((600, 800, 3), np.uint8))
    assert len(dets) == 2
    np.testing.assert_allclose(dets.xyxy[1], [0, 0, 30, 600])  # clipped to the image
    np.testing.assert_allclose(dets.score, [0.9, 0.7])


def test_yolo11n_also_loads(pets_frames):
    gt = np.loadtxt(PETS / "gt" / "gt.txt", delimiter=",")
    threads = torch.get_num_threads()
    detector = build_component(DETECTORS, "yolo", {"weights": WEIGHTS / "yolo11n_int8.tflite",
                                                   "threads": 1}, "detector", "test")
    assert torch.get_num_threads() == threads  # importing ultralytics must not change it
    dets = detector.detect([pets_frames[400]])[0]
    assert _matches(dets.xyxy, tlwh_to_xyxy(gt[gt[:, 0] == 400][:, 2:6])) == 3


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_model.tflite"):
        YoloDetector(weights=tmp_path / "no_such_model.tflite")
    with pytest.raises(ValueError, match="test: unknown detector 'rtdetr'.*yolo"):
        build_component(DETECTORS, "rtdetr", {}, "detector", "test")
    assert set(DETECTORS) == {"yolo"}
    with pytest.raises(ValueError, match="conf and iou"):
        YoloDetector(weights=WEIGHTS / "yolov8n_int8.tflite", conf=1.5)
