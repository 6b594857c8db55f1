"""Unlabelled crops cut from footage by the detector, training with a teacher's losses
only, and instance normalisation in OSNet's shallow blocks."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from pipeline.footage_crops import boxes_to_keep, cut_crops
from pipeline.reid import train as reid_train
from pipeline.reid.batches import TrainBatches
from pipeline.reid.datasets import unlabelled_samples
from pipeline.reid.models.osnet import HalfInstanceNorm, OSNet
from pipeline.reid.transforms import AugmentConfig
from pipeline.reid.weights import load_backbone_weights, load_reid_model, save_reid_weights
from tests.conftest import DATA, REPO

PETS = DATA / "video" / "pets09_s2l1" / "vtest.avi"
OMZ_0288 = DATA / "weights" / "intel_omz" / "person-reidentification-retail-0288.xml"
RECOVERED = REPO / "weights" / "osnet_x0_25_msmt17_recovered.safetensors"
DETECTOR = REPO / "weights" / "yolov8n_recovered.pt"


@pytest.fixture(scope="module")
def pets_crops(tmp_path_factory) -> tuple[Path, list]:
    """Crops the detector cuts from the first 40 frames of PETS09-S2L1 (every 10th)."""
    from pipeline.detection.yolo import YoloDetector

    out = tmp_path_factory.mktemp("crops")
    detector = YoloDetector(weights=DETECTOR, backend="openvino", imgsz=(384, 640), conf=0.25,
                            threads=2)
    records = cut_crops([PETS], out, detector=detector, every=10, max_frames=40,
                        min_score=0.5, min_height=48)
    return out, records


def test_crops_are_cut_from_real_footage_and_traceable(pets_crops) -> None:
    out, records = pets_crops
    # PETS09's first frames show 4-7 walkers, most of them whole and over 48 px tall
    assert 8 <= len(records) <= 4 * 10
    assert {r.frame for r in records} <= {0, 10, 20, 30}
    manifest = json.loads((out / "crops.json").read_text())
    assert [m["file"] for m in manifest] == [r.file for r in records]
    for r in records:
        x1, y1, x2, y2 = r.box
        assert y2 - y1 >= 48 and x2 - x1 <= y2 - y1 and r.score >= 0.5
        image = (out / r.file)
        assert image.is_file() and image.parent.name == "vtest"
    samples = unlabelled_samples([out])
    assert len(samples) == len(records) and {s[1] for s in samples} == {-1}
    # a second cut into the same folder would mix old crops into the new set
    with pytest.raises(ValueError, match="already holds crops"):
        cut_crops([PETS], out, detector=None, max_frames=1)
    assert len(unlabelled_samples([out])) == len(records)


def test_crop_filter_and_errors(tmp_path: Path, capsys) -> None:
    from pipeline.cli import main as cli

    boxes = np.array([[10, 10, 40, 100],    # kept
                      [10, 10, 40, 50],     # too short
                      [10, 10, 120, 100],   # wider than tall
                      [10, 0, 40, 100],     # touches the top edge
                      [10, 10, 40, 100]],   # low score
                     np.float32)
    score = np.array([0.9, 0.9, 0.9, 0.9, 0.3], np.float32)
    assert list(boxes_to_keep(boxes, score, frame_hw=(200, 200), min_score=0.5,
                              min_height=64)) == [0]
    assert cli(["reid", "crops", str(tmp_path / "missing.avi"), "--out",
                str(tmp_path / "o")]) == 2
    assert "footage not found" in capsys.readouterr().err
    assert cli(["reid", "crops", str(PETS), "--out", str(tmp_path / "o"), "--max-frames",
                "2", "--min-height", "2000"]) == 2
    assert "no person crop found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no image files"):
        unlabelled_samples([tmp_path / "o"])


def test_unlabelled_images_ride_at_the_end_of_each_batch() -> None:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (16, 8, 4, 3), dtype=np.uint8))
    extra = torch.from_numpy(rng.integers(0, 256, (6, 8, 4, 3), dtype=np.uint8))
    labels = np.repeat(np.arange(4), 4)
    targets = torch.randn(16, 2, 5)
    extra_targets = torch.randn(6, 2, 5)
    feeder = TrainBatches(images, labels, device="cpu", p=4, k=4, rng=rng, seed=1,
                          augment=AugmentConfig(pad=0, erase_p=0.0), targets=targets,
                          unlabelled=extra, unlabelled_targets=extra_targets,
                          unlabelled_per_batch=3)
    seen = set()
    batches = [b for _ in range(6) for b in feeder.epoch(1)]  # 4 ids: one batch a pass
    assert len(batches) == 6
    for x, y, t in batches:
        assert len(y) == 19 and feeder.num_labelled_in(len(y)) == 16
        assert (y[:16] >= 0).all() and (y[16:] == -1).all()
        for i in range(16, 19):
            match = [(j, f) for j in range(6) for f in (0, 1)
                     if torch.allclose(x[i], _norm(extra[j].flip(1) if f else extra[j]))]
            assert len(match) == 1
            j, f = match[0]
            assert torch.equal(t[i], extra_targets[j, f])
            seen.add(j)
    assert len(seen) >= 4
    with pytest.raises(ValueError, match="teacher's losses only"):
        TrainBatches(images, labels, device="cpu", p=4, k=4, rng=rng, seed=1, unlabelled=extra,
                     unlabelled_per_batch=3)
    with pytest.raises(ValueError, match="6 unlabelled images but 5"):
        TrainBatches(images, labels, device="cpu", p=4, k=4, rng=rng, seed=1, targets=targets,
                     unlabelled=extra, unlabelled_targets=extra_targets[:5],
                     unlabelled_per_batch=3)


def test_a_run_with_unlabelled_crops_distils_the_teacher_on_them(tmp_path: Path,
                                                                 pets_crops) -> None:
    crops, records = pets_crops
    root = tmp_path / "data"
    root.mkdir()
    for path in sorted((DATA / "reid" / "cuhk01").glob("*.jpg"))[: 16 * 4]:
        shutil.copy(path, root / path.name)
    parser = argparse.ArgumentParser()
    reid_train.add_arguments(parser)
    common = ["--model", "osnet", "--model-config", '{"attention": "rga-sc"}',
              "--init-from", str(RECOVERED), "--data", str(root), "--protocol", "folder",
              "--out", str(tmp_path / "s.safetensors"), "--batch-p", "8", "--batch-k", "4",
              "--warmup-epochs", "0", "--threads", "2", "--device", "cpu", "--amp", "off",
              "--no-progress", "--cache-dir", str(tmp_path / "cache"),
              "--checkpoint-dir", str(tmp_path / "ckpt"), "--unlabelled", str(crops),
              "--unlabelled-per-batch", "8"]
    with pytest.raises(ValueError, match="give --teacher"):
        reid_train.main(parser.parse_args(common))
    # labels -1 reaching the identity loss would fail the run: they see the teacher only
    assert reid_train.main(parser.parse_args(
        [*common, "--teacher", f"{OMZ_0288}@bgr255", "--epochs", "4"])) == 0
    caches = sorted(np.load(p).shape for p in (tmp_path / "cache").glob("teacher_*.npy"))
    assert caches == sorted([(64, 2, 256), (len(records), 2, 256)])
    log = [json.loads(line) for line in (tmp_path / "s.train.jsonl").read_text().splitlines()]
    assert log[-1]["distill"] < 0.8 * log[0]["distill"], [e["distill"] for e in log]
    card = json.loads((tmp_path / "s.json").read_text())
    assert card["recipe"]["unlabelled"] == str(crops)


def test_half_instance_norm_removes_each_images_contrast(tmp_path: Path) -> None:
    plain = OSNet(attention="rga-sc")
    ibn = OSNet(attention="rga-sc", ibn_stages=[0, 1])
    load_backbone_weights(plain, RECOVERED)
    load_backbone_weights(ibn, RECOVERED)  # the BatchNorm weights load unchanged
    assert isinstance(ibn.stem[1], HalfInstanceNorm)
    assert all(isinstance(b.reduce[1], HalfInstanceNorm) for b in ibn.stages[0].blocks)
    assert not isinstance(ibn.stages[1].blocks[0].reduce[1], HalfInstanceNorm)
    assert torch.equal(ibn.stem[1].weight, plain.stem[1].weight)
    ibn.eval()
    x = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        a, b = ibn.stem(x), ibn.stem(1.7 * x)  # the stem's conv has no bias
        # instance-normalised half: unchanged but for the variance epsilon
        assert (a[:, :8] - b[:, :8]).abs().max() < 1e-2
        assert (a[:, 8:] - b[:, 8:]).abs().max() > 0.5  # BatchNorm half
        conv = ibn.stem[0](x)
        want = F.instance_norm(conv[:, :8]) * ibn.stem[1].weight[:8].view(1, -1, 1, 1) \
            + ibn.stem[1].bias[:8].view(1, -1, 1, 1)
        assert torch.allclose(ibn.stem[1](conv)[:, :8], want, atol=1e-5)
        out = ibn(x)
    path = tmp_path / "ibn.safetensors"
    save_reid_weights(ibn, path, card={}, half=False)
    loaded, _ = load_reid_model(path)
    assert loaded.config()["ibn_stages"] == [0, 1]
    with torch.no_grad():
        assert torch.allclose(loaded(x), out, atol=1e-5)
    with pytest.raises(ValueError, match="ibn_stages"):
        OSNet(ibn_stages=[4])


def _norm(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (image.permute(2, 0, 1).float() / 255.0 - mean) / std
