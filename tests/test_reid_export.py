"""ONNX / OpenVINO export with parity against PyTorch on real CUHK01 crops."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import pipeline.reid.export as export_mod
from pipeline.reid.export import ParityError, add_arguments, export, main, parity_batch
from pipeline.reid.models import build_reid_model
from pipeline.reid.weights import save_reid_weights
from tests.conftest import DATA


@pytest.fixture(scope="module")
def hacnn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "hacnn.safetensors"
    save_reid_weights(build_reid_model("hacnn"), path, card={"note": "random, test"})
    return path


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_onnx_export_cli_parity_and_dynamic_batch(hacnn_weights: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hacnn.onnx"
    assert main(_args("--weights", str(hacnn_weights), "--out", str(out),
                      "--data", str(DATA / "reid"), "--parity-images", "16")) == 0
    assert "min cosine" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = parity_batch(DATA / "reid", (160, 64), count=3)
    y = session.run(None, {"images": x})[0]
    assert y.shape == (3, 1024)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)


def test_openvino_export_parity(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_reid_model("hacnn").eval()
    report = export(model, tmp_path / "hacnn.xml", fmt="openvino", data=DATA / "reid", count=16)
    assert report["passed"] and report["min_cosine"] >= 0.999 and report["count"] == 16
    assert (tmp_path / "hacnn.xml").is_file() and (tmp_path / "hacnn.bin").is_file()


def test_parity_failure_is_an_error_and_removes_files(tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(2)
    model = build_reid_model("hacnn").eval()
    real = export_mod.onnx_runner

    def broken(path: Path):
        run = real(path)
        rng = np.random.default_rng(0)
        return lambda x: run(x) + rng.normal(0, 0.2, size=(len(x), 1024)).astype(np.float32)

    monkeypatch.setattr(export_mod, "onnx_runner", broken)
    with pytest.raises(ParityError, match="min cosine"):
        export(model, tmp_path / "bad.onnx", fmt="onnx", data=DATA / "reid", count=8)
    assert not (tmp_path / "bad.onnx").exists()
