"""Protocol evaluation on real CUHK01 images with the peer OSNet ONNX model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.reid.embedder import CropEmbedder
from pipeline.reid.evaluate import add_arguments, evaluate_protocol, main, misalign_crop
from tests.conftest import DATA

PEER_ONNX = DATA / "weights" / "osnet_x0_25_msmt17.onnx"
needs_peer = pytest.mark.skipif(not PEER_ONNX.is_file(), reason="peer ONNX model missing")


def test_misalign_crop_geometry() -> None:
    image = np.arange(40 * 20 * 3, dtype=np.uint8).reshape(40, 20, 3)
    rng = np.random.default_rng(0)
    assert np.array_equal(misalign_crop(image, 0.0, rng), image)
    sizes = [misalign_crop(image, 0.2, rng, pad="zero").shape[:2] for _ in range(50)]
    hs, ws = np.array(sizes).T
    assert hs.min() >= 31 and hs.max() <= 49 and ws.min() >= 15 and ws.max() <= 25
    assert len(set(sizes)) > 5


@needs_peer
def test_peer_on_50_ids_is_sensible_and_misalignment_hurts() -> None:
    embedder = CropEmbedder(weights=PEER_ONNX, backend="onnx", threads=2, batch_size=64)
    res = evaluate_protocol(embedder.embed_crops, root=DATA / "reid", protocol="cuhk01",
                            misalign=(0.3,), seed=0, max_ids=50)
    assert set(res["directions"]) == {"cam1->cam2", "cam2->cam1"}
    for m in res["directions"].values():
        assert m["num_query"] == 100 and m["num_gallery"] == 100 and m["num_valid"] == 100
        assert m["rank1"] > 0.4
        assert m["rank1"] <= m["rank5"] <= m["rank10"]
        assert 0.3 < m["mAP"] <= 1.0
    drops = [m["misalign"]["0.3"]["rank1_drop"] for m in res["directions"].values()]
    assert np.mean(drops) > 0  # +-30 % box jitter must cost accuracy on average


def test_cli_reports_missing_weights(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--weights", str(tmp_path / "w.safetensors"),
                              "--data", str(DATA / "reid")])
    with pytest.raises(FileNotFoundError, match="w.safetensors"):
        main(args)


@needs_peer
def test_cli_json_output(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    import pipeline.reid.evaluate as ev

    real = ev.evaluate_protocol
    monkeypatch.setattr(ev, "evaluate_protocol", lambda fn, **kw: real(fn, max_ids=10, **kw))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--weights", str(PEER_ONNX), "--data", str(DATA / "reid"),
                              "--json", "--threads", "1"])
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["directions"]["cam1->cam2"]["num_query"] == 20


def test_cli_openvino_backend_matches_torch(capsys: pytest.CaptureFixture[str],
                                            monkeypatch) -> None:
    """``--backend openvino`` evaluates the shipped safetensors file like PyTorch does."""
    import pipeline.reid.evaluate as ev

    weights = Path(__file__).resolve().parents[1] / "weights" / "hacnn_cuhk.safetensors"
    real = ev.evaluate_protocol
    monkeypatch.setattr(ev, "evaluate_protocol", lambda fn, **kw: real(fn, max_ids=25, **kw))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    results = {}
    for backend in ("torch", "openvino"):
        args = parser.parse_args(["--weights", str(weights), "--data", str(DATA / "reid"),
                                  "--json", "--threads", "2", "--backend", backend])
        assert main(args) == 0
        results[backend] = json.loads(capsys.readouterr().out)
        assert results[backend]["backend"] == backend
        assert results[backend]["precision"] == "fp32"
    for name, m in results["torch"]["directions"].items():
        other = results["openvino"]["directions"][name]
        assert m["num_query"] == other["num_query"] == 50
        # Same model, f32 on both sides: at most one of 50 queries may flip rank.
        assert abs(m["rank1"] - other["rank1"]) <= 1 / 50 + 1e-9
        assert abs(m["mAP"] - other["mAP"]) < 0.01
