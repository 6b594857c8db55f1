"""HA-CNN model contract and the safetensors weight files, on real CUHK01 crops."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pipeline.reid.datasets import read_cuhk_folder, read_image_rgb
from pipeline.reid.models import build_reid_model
from pipeline.reid.models.hacnn import HACNN
from pipeline.reid.transforms import normalize
from pipeline.reid.weights import load_reid_model, save_reid_weights
from tests.conftest import DATA as SHARED

DATA = SHARED / "reid"


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    """Six real CUHK01 crops (3 people x 2 cameras), normalised [6,3,160,64]."""
    samples = [s for s in read_cuhk_folder(DATA / "cuhk01") if s[1] in (1, 2, 3)]
    picked = [s for s in samples if s[0].name.endswith(("_01.jpg", "_03.jpg"))]
    assert len(picked) == 6
    images = np.stack([read_image_rgb(p, (160, 64)) for p, _, _ in picked])
    return normalize(torch.from_numpy(images))


@pytest.fixture(scope="module")
def model() -> HACNN:
    torch.manual_seed(0)
    net = build_reid_model("hacnn")
    assert isinstance(net, HACNN)
    # A few training-mode passes give BatchNorm non-trivial running statistics.
    with torch.no_grad():
        for _ in range(2):
            net.features(torch.randn(8, 3, 160, 64))
    return net.eval()


def test_contract_shapes_and_norm(model: HACNN, crops: torch.Tensor) -> None:
    assert model.input_hw == (160, 64)
    assert model.embedding_dim == 1024
    with torch.no_grad():
        emb = model(crops)
        feats = model.features(crops)
    assert emb.shape == (6, 1024)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(6))
    assert set(feats) == {"global", "local"}
    assert feats["global"].shape == (6, 512) and feats["local"].shape == (6, 512)
    torch.testing.assert_close(model.embed(crops), emb)


def test_eval_is_deterministic_and_batch_independent(model: HACNN, crops: torch.Tensor) -> None:
    with torch.no_grad():
        a = model(crops)
        b = model(crops)
        single = model(crops[2:3])
    assert torch.equal(a, b)
    torch.testing.assert_close(single[0], a[2], atol=1e-5, rtol=1e-4)


def test_parameter_count_and_config_round_trip(model: HACNN) -> None:
    n = sum(p.numel() for p in model.parameters())
    assert 1.5e6 < n < 4.0e6, n
    rebuilt = build_reid_model("hacnn", **json.loads(json.dumps(model.config())))
    assert sum(p.numel() for p in rebuilt.parameters()) == n


def test_hard_attention_starts_as_horizontal_stripes() -> None:
    net = HACNN().eval()
    x = torch.arange(2 * 3 * 80 * 32, dtype=torch.float32).view(2, 3, 80, 32)
    with torch.no_grad():
        _, theta = net.attention[0](torch.randn(2, 128, 40, 16))
        regions = net._crop_regions(x, theta)
    assert regions.shape == (8, 3, 20, 32)
    for i in range(4):
        torch.testing.assert_close(regions[i], x[0, :, 20 * i : 20 * (i + 1)], atol=1e-2, rtol=0)


def test_safetensors_round_trip(model: HACNN, crops: torch.Tensor, tmp_path: Path) -> None:
    full = tmp_path / "full.safetensors"
    half = tmp_path / "half.safetensors"
    save_reid_weights(model, full, card={"note": "test"}, half=False)
    save_reid_weights(model, half, card={"note": "test"})
    with torch.no_grad():
        ref = model(crops)
        loaded, card = load_reid_model(full)
        torch.testing.assert_close(loaded(crops), ref, atol=1e-6, rtol=0)
        loaded_half, _ = load_reid_model(half)
        # fp16 storage: cosine similarity to the fp32 embedding stays ~1.
        assert float((loaded_half(crops) * ref).sum(1).min()) > 0.999
    assert not loaded.training
    assert card["note"] == "test" and card["model"] == "hacnn"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    # safetensors layout: 8-byte little-endian header length, then a JSON header; no pickle.
    raw = full.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    assert header["__metadata__"]["format"] == "mtmc-reid-1"
    assert header["__metadata__"]["model"] == "hacnn"
    assert b"\x80\x04" not in raw[: 8 + header_len] and not raw.startswith(b"PK")
    counters = [k for k, v in header.items() if k.endswith("num_batches_tracked")]
    assert counters and all(header[k]["dtype"] == "I64" for k in counters)


def test_load_errors_are_clear(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors.*mtmc reid train"):
        load_reid_model(missing)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not an mtmc re-id weight file"):
        load_reid_model(foreign)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_reid_model(junk)
