"""CropEmbedder: cropping, colour order, batching, backends, missing-weights errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from pipeline.reid.embedder import IMAGENET_MEAN, IMAGENET_STD, CropEmbedder, crop_boxes
from pipeline.reid.models import build_reid_model
from tests.conftest import DATA

CUHK01 = DATA / "reid" / "cuhk01"
PEER_ONNX = DATA / "weights" / "osnet_x0_25_msmt17.onnx"


class Probe(nn.Module):
    """Records every input batch; embeds as per-channel means (de-normalised RGB)."""

    name = "probe"

    def __init__(self) -> None:
        super().__init__()
        self.input_hw = (32, 16)
        self.embedding_dim = 3
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.clone())
        mean = torch.as_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.as_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (x * std + mean).mean(dim=(2, 3)) + 1e-3


def _rgb_means(probe: Probe) -> np.ndarray:
    x = torch.cat(probe.calls).numpy()
    return (x * IMAGENET_STD.reshape(1, 3, 1, 1) + IMAGENET_MEAN.reshape(1, 3, 1, 1)).mean((2, 3))


def test_blue_bgr_patch_arrives_blue_and_crops_are_the_boxes() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[10:50, 20:60] = (255, 0, 0)  # pure blue in BGR
    image[60:100, 150:200] = (0, 0, 255)  # pure red in BGR
    probe = Probe()
    emb = CropEmbedder(model=probe).embed([image], [np.array([[20, 10, 60, 50],
                                                              [150, 60, 200, 100]], float)])
    rgb = _rgb_means(probe)
    np.testing.assert_allclose(rgb[0], [0, 0, 1], atol=1e-5)  # blue -> RGB channel 2
    np.testing.assert_allclose(rgb[1], [1, 0, 0], atol=1e-5)  # red -> RGB channel 0
    assert emb[0].shape == (2, 3) and emb[0].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb[0], axis=1), 1.0, atol=1e-6)


def test_all_cameras_batched_together_and_degenerate_boxes_handled() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    boxes = [
        np.array([[0, 0, 40, 80], [-30, -10, 20, 200], [100, 50, 100, 50]], float),  # 0-area
        np.zeros((0, 4)),
        np.array([[500, 500, 600, 700], [10.4, 20.6, 10.9, 21.2], [5, 5, 150, 115]], float),
    ]
    probe = Probe()
    out = CropEmbedder(model=probe, batch_size=4).embed(images, boxes)
    assert [o.shape for o in out] == [(3, 3), (0, 3), (3, 3)]
    assert len(probe.calls) == 2  # 6 crops of all cameras in batches of 4: 2 calls
    assert all(np.isfinite(o).all() for o in out)
    crops = crop_boxes(images[0], boxes[0])
    assert crops[0].shape == (80, 40, 3) and crops[1].shape == (120, 20, 3)
    assert crops[2].shape[:2] == (1, 1)


def test_batched_equals_unbatched_on_real_crops() -> None:
    torch.manual_seed(0)
    model = build_reid_model("hacnn").eval()
    paths = sorted(CUHK01.glob("000[1-3]_c*.jpg"))
    crops = [cv2.imread(str(p)) for p in paths]
    one = CropEmbedder(model=model, batch_size=1).embed_crops(crops)
    many = CropEmbedder(model=model, batch_size=32).embed_crops(crops)
    assert one.shape == (len(paths), model.embedding_dim)
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_flip_averages_a_crop_with_its_mirror_image() -> None:
    torch.manual_seed(0)
    model = build_reid_model("hacnn").eval()
    crops = [cv2.imread(str(p)) for p in sorted(CUHK01.glob("000[1-2]_c*.jpg"))]
    mirrored = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
    plain = CropEmbedder(model=model)
    flip = CropEmbedder(model=model, flip=True, batch_size=3)  # batches cut mid-person
    out = flip.embed_crops(crops)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # A crop and its mirror image get the same embedding, the normalised mean of both.
    np.testing.assert_allclose(out, flip.embed_crops(mirrored), atol=1e-5)
    mean = plain.embed_crops(crops) + plain.embed_crops(mirrored)
    np.testing.assert_allclose(out, mean / np.linalg.norm(mean, axis=1, keepdims=True),
                               atol=1e-5)
    assert np.abs(out - plain.embed_crops(crops)).max() > 1e-3


def test_safetensors_round_trip_and_missing_weights(tmp_path: Path) -> None:
    from pipeline.reid.weights import save_reid_weights

    torch.manual_seed(0)
    model = build_reid_model("hacnn").eval()
    path = tmp_path / "hacnn.safetensors"
    save_reid_weights(model, path, card={"note": "test"}, half=False)
    crops = [cv2.imread(str(p)) for p in sorted(CUHK01.glob("0004_c*.jpg"))]
    loaded = CropEmbedder(weights=path, threads=1)
    assert loaded.input_hw == model.input_hw
    np.testing.assert_allclose(loaded.embed_crops(crops),
                               CropEmbedder(model=model).embed_crops(crops), atol=1e-5)
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors.*mtmc reid train"):
        CropEmbedder(model="rga", weights=missing)
    with pytest.raises(ValueError, match="mtmc reid train"):
        CropEmbedder(model="rga")  # a name without weights never means random weights
    with pytest.raises(ValueError, match="hacnn"):
        CropEmbedder(model="rga", weights=path)


@pytest.mark.skipif(not PEER_ONNX.is_file(), reason="peer ONNX model not in shared data")
def test_onnx_backend_same_person_closer_than_others() -> None:
    emb = CropEmbedder(weights=PEER_ONNX, backend="onnx", threads=1)
    assert emb.input_hw == (256, 128)
    crops = [cv2.imread(str(CUHK01 / f"{pid:04d}_c{c}_{k:02d}.jpg"))
             for pid, c, k in [(500, 1, 1), (500, 2, 3), (501, 2, 3), (502, 2, 3)]]
    out = emb.embed_crops(crops)
    assert out.shape == (4, 512)
    sims = out[1:] @ out[0]
    assert sims[0] > sims[1:].max()


def test_shipped_weights_in_bf16_agree_with_fp32_on_real_crops() -> None:
    shipped = Path(__file__).resolve().parents[1] / "weights" / "hacnn_cuhk.safetensors"
    crops = [cv2.imread(str(p)) for p in sorted(CUHK01.glob("000[1-4]_c*.jpg"))]
    fp32 = CropEmbedder(model="hacnn", weights=shipped).embed_crops(crops)
    bf16 = CropEmbedder(model="hacnn", weights=shipped, precision="bf16").embed_crops(crops)
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-4)
    assert (fp32 * bf16).sum(axis=1).min() > 0.995
    with pytest.raises(ValueError, match="precision"):
        CropEmbedder(model="hacnn", weights=shipped, precision="fp8")


@pytest.mark.parametrize(("precision", "min_cos"), [("fp32", 0.9999), ("bf16", 0.995)])
def test_openvino_backend_matches_torch_on_real_crops(precision: str, min_cos: float) -> None:
    """The OpenVINO backend converts our safetensors at load and embeds like PyTorch."""
    shipped = Path(__file__).resolve().parents[1] / "weights" / "hacnn_cuhk.safetensors"
    crops = [cv2.imread(str(p)) for p in sorted(CUHK01.glob("000[1-4]_c*.jpg"))]
    ref = CropEmbedder(model="hacnn", weights=shipped).embed_crops(crops)
    ov = CropEmbedder(model="hacnn", weights=shipped, backend="openvino", precision=precision,
                      threads=2, batch_size=5)
    got = ov.embed_crops(crops)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert ov.input_hw == (160, 64) and ov.embedding_dim == ref.shape[1]
    assert (ref * got).sum(axis=1).min() > min_cos
    with pytest.raises(ValueError, match="openvino"):
        CropEmbedder(model="hacnn", weights=shipped, backend="tensorrt")


class _ShapeLog:
    """Wraps a compiled OpenVINO model, logging the batch size of every call."""

    def __init__(self, compiled: object) -> None:
        self.compiled, self.sizes = compiled, []

    def __call__(self, x: np.ndarray) -> object:
        self.sizes.append(len(x))
        return self.compiled(x)

    def output(self, index: int) -> object:
        return self.compiled.output(index)


def test_openvino_runs_bucketed_batch_sizes_and_drops_the_padding() -> None:
    """Batches of any size run at one of a few compiled sizes (memory stays bounded on
    live runs); the blank crops that fill a bucket change no real crop's embedding."""
    shipped = Path(__file__).resolve().parents[1] / "weights" / "osnet_rga.safetensors"
    crops = [cv2.imread(str(p)) for p in sorted(CUHK01.glob("000[1-3]_c*.jpg"))][:9]
    ov = CropEmbedder(model="osnet", weights=shipped, backend="openvino", threads=2,
                      batch_size=12)
    log = ov.runtime._compiled = _ShapeLog(ov.runtime._compiled)
    ov.warm_up()
    assert log.sizes == [1, 2, 3, 4, 8, 12]
    log.sizes.clear()
    full = ov.embed_crops(crops)
    for n in range(1, len(crops) + 1):
        got = ov.embed_crops(crops[:n])
        assert got.shape == (n, ov.embedding_dim)
        np.testing.assert_allclose(got, full[:n], atol=1e-5)
    assert set(log.sizes) == {1, 2, 3, 4, 8, 12}
