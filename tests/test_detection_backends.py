"""Detector backends on real frames: recovered weights vs INT8, ONNX/OpenVINO vs PyTorch.

Measured with benchmarks/detector_backends.py (see docs/PERFORMANCE.md): at 640x640 the
recovered float32 model's boxes match the INT8 LiteRT boxes one-to-one at IoU >= 0.9 for
~90% of boxes on PETS09/MOT17; ONNX Runtime (f32) reproduces PyTorch to < 0.1 px and
OpenVINO bf16 to ~1 px. Bounds below sit under those values.
"""

from __future__ import annotations

import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.detection import YoloDetector
from pipeline.detection.backends import BACKENDS, infer_backend
from pipeline.geometry import iou_matrix, linear_assignment
from tests.conftest import DATA, REPO, pets09_frames

INT8 = DATA / "weights" / "yolov8n_int8.tflite"
RECOVERED = REPO / "weights" / "yolov8n_recovered.pt"
PETS_FRAMES = (150, 400)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    images = pets09_frames(PETS_FRAMES)
    mot = DATA / "mot" / "MOT17-mini" / "train" / "MOT17-04-FRCNN" / "img1" / "000001.jpg"
    return [*images, cv2.imread(str(mot))]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("detector_cache")


@pytest.fixture(scope="module")
def torch_detector() -> YoloDetector:
    return YoloDetector(weights=RECOVERED, imgsz=(384, 640), threads=1)


def _matched_share(a, b, min_iou: float) -> float:
    """Share of boxes (of the larger set) matched one-to-one at IoU >= min_iou."""
    matches, _, _ = linear_assignment(1.0 - iou_matrix(a.xyxy, b.xyxy), max_cost=1.0 - min_iou)
    return len(matches) / max(len(a), len(b), 1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here must work offline: any outgoing connection fails loudly."""
    def refuse(*_args, **_kwargs):
        raise OSError("network access attempted during a detector test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_recovered_matches_int8(frames):
    int8 = YoloDetector(weights=INT8, threads=1)
    recovered = YoloDetector(weights=RECOVERED, imgsz=640, threads=1)
    assert recovered.backend == "torch" and int8.backend == "litert"
    shares = [_matched_share(a, b, 0.9)
              for a, b in zip(int8.detect(frames), recovered.detect(frames), strict=True)]
    assert all(len(d) > 0 for d in int8.detect(frames))
    assert np.mean(shares) >= 0.8, shares
    assert min(shares) >= 0.7, shares


@pytest.mark.parametrize(("backend", "precision", "tolerance_px"),
                         [("onnx", None, 0.5), ("openvino", "f32", 0.5),
                          ("openvino", "bf16", 6.0)])
def test_exports_match_torch(frames, torch_detector, cache, backend, precision, tolerance_px):
    exported = YoloDetector(weights=RECOVERED, backend=backend, imgsz=(384, 640), threads=1,
                            precision=precision, cache_dir=cache)
    assert any(cache.glob("yolov8n_recovered-*-384x640-*.onnx"))  # exported once, cached
    for ref, got in zip(torch_detector.detect(frames), exported.detect(frames), strict=True):
        if precision == "bf16":  # rounding moves a few borderline boxes
            assert _matched_share(ref, got, 0.8) >= 0.85
            continue
        assert len(ref) == len(got)
        matches, _, _ = linear_assignment(1.0 - iou_matrix(ref.xyxy, got.xyxy), max_cost=0.1)
        assert len(matches) == len(ref)
        diff = np.abs(ref.xyxy[matches[:, 0]] - got.xyxy[matches[:, 1]]).max()
        assert diff <= tolerance_px
        np.testing.assert_allclose(ref.score[matches[:, 0]], got.score[matches[:, 1]],
                                   atol=0.01)


def test_onnx_file_runs_in_both_runtimes(frames, torch_detector, cache):
    onnx_file = next(cache.glob("*.onnx"), None)
    if onnx_file is None:  # the parametrised export test did not run first
        YoloDetector(weights=RECOVERED, backend="onnx", imgsz=(384, 640), cache_dir=cache)
        onnx_file = next(cache.glob("*.onnx"))
    assert infer_backend(onnx_file) == "onnx"
    by_ov = YoloDetector(weights=onnx_file, backend="openvino", imgsz=(384, 640),
                         precision="f32", threads=1)
    ref = torch_detector.detect(frames[:1])[0]
    assert _matched_share(ref, by_ov.detect(frames[:1])[0], 0.95) == 1.0
    with pytest.raises(ValueError, match="fixed 384x640 input.*imgsz"):
        YoloDetector(weights=onnx_file, imgsz=640)


def test_torch_threads_applied():
    before = torch.get_num_threads()
    try:
        YoloDetector(weights=RECOVERED, imgsz=(384, 640), threads=2)
        assert torch.get_num_threads() == 2
        YoloDetector(weights=RECOVERED, imgsz=(384, 640), threads=1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        YoloDetector(weights=INT8, threads=1)  # other runtimes leave torch alone
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_runtime_threads_applied(cache):
    onnx = YoloDetector(weights=RECOVERED, backend="onnx", imgsz=(384, 640), threads=1,
                        cache_dir=cache)
    assert onnx._net._session.get_session_options().intra_op_num_threads == 1
    ov = YoloDetector(weights=RECOVERED, backend="openvino", imgsz=(384, 640), threads=1,
                      precision="f32", cache_dir=cache)
    assert int(ov._net._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert ov._net.precision == "fp32"


def test_checkpoint_loads_with_ultralytics_offline():
    from pipeline.detection.ultralytics_import import import_yolo

    model = import_yolo()(str(RECOVERED), task="detect")
    assert model.names[0] == "person" and len(model.names) == 80
    assert model.task == "detect"


def test_backend_choice_and_errors(tmp_path):
    assert set(BACKENDS) == {"litert", "torch", "onnx", "openvino"}
    assert [infer_backend(Path(p)) for p in ("a.tflite", "b.pt", "c.onnx", "d.xml")] == [
        "litert", "torch", "onnx", "openvino"]
    with pytest.raises(ValueError, match="Cannot infer.*model.bin"):
        infer_backend(Path("model.bin"))
    with pytest.raises(ValueError, match="unknown detector backend 'tensorrt'.*openvino"):
        YoloDetector(weights=RECOVERED, backend="tensorrt")
    with pytest.raises(ValueError, match="fixed 640x640 input"):
        YoloDetector(weights=INT8, imgsz=(384, 640))
    with pytest.raises(ValueError, match="multiples of 32"):
        YoloDetector(weights=RECOVERED, imgsz=(380, 640))
    with pytest.raises(ValueError, match="precision"):
        YoloDetector(weights=RECOVERED, backend="openvino", precision="int4")
