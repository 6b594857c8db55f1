"""INT8 OpenVINO models (``pipeline.int8``, ``tools/quantize_openvino.py``) on real data.

The shipped INT8 IRs were calibrated on the sample's frames (detector) and CUHK03's
detected crops (re-id); they are checked here against their float originals on data
they never saw: PETS09 frames and CUHK01 test crops. Measured when they were made
(docs/PERFORMANCE.md): HA-CNN CUHK01 Rank-1 54.8 vs 55.2 (f32), crop cosine to f32
~0.99; detector boxes see below. Bounds sit under those values.
"""

from __future__ import annotations

import json
import logging
import shutil

import cv2
import numpy as np
import pytest

from pipeline.detection import YoloDetector
from pipeline.geometry import iou_matrix, linear_assignment
from pipeline.int8 import detector_ir, reid_ir
from pipeline.reid.embedder import CropEmbedder
from tests.conftest import DATA, REPO, pets09_frames

DETECTOR = REPO / "weights" / "yolov8n_recovered.pt"
REID = REPO / "weights" / "hacnn_cuhk.safetensors"
PETS_FRAMES = (50, 150, 300, 400, 600)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return pets09_frames(PETS_FRAMES)


def _detector(**kwargs) -> YoloDetector:
    return YoloDetector(weights=DETECTOR, backend="openvino", imgsz=(384, 640), threads=2,
                        **kwargs)


def _matched(ref, got, min_iou: float) -> tuple[int, float]:
    """(one-to-one matches at IoU >= min_iou, their largest corner difference in px)."""
    matches, _, _ = linear_assignment(1.0 - iou_matrix(ref.xyxy, got.xyxy),
                                      max_cost=1.0 - min_iou)
    if not len(matches):
        return 0, 0.0
    diff = np.abs(ref.xyxy[matches[:, 0]] - got.xyxy[matches[:, 1]]).max()
    return len(matches), float(diff)


def test_shipped_irs_exist_for_the_shipped_configs():
    assert detector_ir(DETECTOR, (384, 640)).is_file()
    assert reid_ir(REID).is_file()


def test_int8_detector_keeps_the_f32_people(frames):
    f32, int8 = _detector(precision="f32"), _detector(precision="int8")
    assert int8._net.precision == "int8" and f32._net.precision == "fp32"
    kept = total = 0
    for ref, got in zip(f32.detect(frames), int8.detect(frames), strict=True):
        strong = ref.score >= 0.4  # the boxes that start and carry tracks
        ref = type(ref)(xyxy=ref.xyxy[strong], score=ref.score[strong])
        matched, _ = _matched(ref, got, 0.7)
        kept += matched
        total += len(ref)
    assert total > 20
    assert kept / total >= 0.9, (kept, total)


def test_two_streams_give_the_one_stream_boxes(frames):
    one, two = _detector(precision="f32"), _detector(precision="f32", streams=2)
    assert two.list_call and not one.list_call
    for ref, got in zip(one.detect(frames), two.detect(frames), strict=True):
        assert len(ref) == len(got)
        matched, diff = _matched(ref, got, 0.9)
        assert matched == len(ref) and diff < 0.5


def test_int8_falls_back_to_f32_where_no_ir_was_made(caplog):
    with caplog.at_level(logging.WARNING):
        other = YoloDetector(weights=DETECTOR, backend="openvino", imgsz=(320, 576),
                             threads=1, precision="int8")
    # OpenVINO's float default for this CPU: bf16 where it has AVX512-BF16/AMX, else f32
    assert other._net.precision in ("fp32", "bf16")
    assert "quantize_openvino.py detector" in caplog.text and "320x576" in caplog.text


def test_int8_reid_embeddings_follow_f32():
    crops = [cv2.imread(str(p)) for p in sorted((DATA / "reid" / "cuhk01").glob("*.jpg"))[
        -200::5]]  # test identities (0486-0971), never used for calibration
    f32 = CropEmbedder(weights=REID, backend="openvino", precision="fp32", threads=2)
    int8 = CropEmbedder(weights=REID, backend="openvino", precision="int8", threads=2)
    assert int8.card["model"] == "hacnn" and int8.embedding_dim == f32.embedding_dim
    a, b = f32.embed_crops(crops), int8.embed_crops(crops)
    cosine = (a * b).sum(axis=1)
    # Measured: mean 0.98, 5th percentile ~0.95, worst of 40 ~0.87.
    assert cosine.mean() >= 0.97 and np.percentile(cosine, 10) >= 0.9, np.sort(cosine)[:5]
    # What re-id needs: each INT8 embedding finds its own crop among the f32 ones.
    assert ((b @ a.T).argmax(axis=1) == np.arange(len(a))).mean() >= 0.95


def test_int8_of_another_weights_version_is_refused(tmp_path):
    weights = tmp_path / "hacnn_cuhk.safetensors"
    shutil.copy(REID, weights)
    shutil.copy(REID.with_suffix(".json"), weights.with_suffix(".json"))
    for suffix in (".xml", ".bin", ".json"):
        shutil.copy(reid_ir(REID).with_suffix(suffix), reid_ir(weights).with_suffix(suffix))
    CropEmbedder(weights=weights, backend="openvino", precision="int8", threads=1)
    sidecar = reid_ir(weights).with_suffix(".json")
    info = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**info, "source_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="another version"):
        CropEmbedder(weights=weights, backend="openvino", precision="int8", threads=1)
    reid_ir(weights).with_suffix(".bin").unlink()
    with pytest.raises(FileNotFoundError, match="quantize_openvino.py reid"):
        CropEmbedder(weights=weights, backend="openvino", precision="int8", threads=1)
    with pytest.raises(ValueError, match="openvino backend only"):
        CropEmbedder(weights=REID, backend="torch", precision="int8")
