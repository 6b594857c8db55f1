"""Export re-id weights to ONNX or OpenVINO IR, with a parity check (``mtmc reid export``).

The exported graph is the model's ``embed`` (L2-normalised output), input
``images`` [batch, 3, H, W] RGB ImageNet-normalised, output ``embeddings``
[batch, D]; the batch dimension is dynamic. Parity is checked against PyTorch on
real CUHK01 crops (preprocessed exactly as the embedder does): the export is
accepted only if every crop's cosine similarity is >= the threshold; otherwise
the written files are removed and an error is raised.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.reid.embedder import preprocess_crops
from pipeline.reid.runtimes import export_onnx

__all__ = [
    "ParityError",
    "add_arguments",
    "check_parity",
    "export_onnx",
    "export_openvino",
    "main",
    "onnx_runner",
    "openvino_runner",
    "parity_batch",
]

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino")


class ParityError(RuntimeError):
    """The exported model's embeddings differ from PyTorch's."""


def export_openvino(onnx_path: Path, out: Path) -> Path:
    """Convert an ONNX file to OpenVINO IR (``out`` = the .xml; the .bin goes beside it)."""
    import openvino as ov

    out = Path(out).with_suffix(".xml")
    out.parent.mkdir(parents=True, exist_ok=True)
    ov_model = ov.convert_model(str(onnx_path))
    ov.save_model(ov_model, str(out), compress_to_fp16=False)
    logger.info("wrote OpenVINO IR %s", out)
    return out


def parity_batch(data: Path, input_hw: tuple[int, int], *, count: int = 64) -> np.ndarray:
    """Real crops for the parity check: ``count`` CUHK01 images spread over all ids.

    Args:
        data: Folder holding ``cuhk01/`` (e.g. shared/data/reid).
        input_hw: Model input (H, W).
        count: Number of crops.

    Returns:
        (count, 3, H, W) float32, preprocessed like the embedder (BGR -> RGB, ImageNet).
    """
    folder = Path(data) / "cuhk01"
    paths = sorted(folder.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(
            f"no parity images in {folder}; pass --data pointing at shared/data/reid"
        )
    picks = [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]
    crops = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in picks]
    return preprocess_crops(crops, input_hw, bgr=True)


def check_parity(
    model: nn.Module, run: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
    *, min_cosine: float = 0.999,
) -> dict:
    """Compare exported embeddings with PyTorch's on the same inputs.

    Args:
        model: The PyTorch model (eval).
        run: Exported model: (N, 3, H, W) float32 -> (N, D).
        x: Inputs (N, 3, H, W) float32.
        min_cosine: Acceptance threshold for every row.

    Returns:
        {"count", "min_cosine", "mean_cosine", "max_abs_diff", "passed"}.
    """
    with torch.inference_mode():
        ref = model.float().cpu().eval()(torch.from_numpy(x)).numpy()
    got = np.asarray(run(x), np.float32)
    if got.shape != ref.shape:
        raise ParityError(f"exported model returns {got.shape}, PyTorch {ref.shape}")
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    cos = (unit(ref) * unit(got)).sum(axis=1)
    return {"count": len(x), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            "max_abs_diff": float(np.abs(ref - got).max()),
            "passed": bool(cos.min() >= min_cosine)}


def onnx_runner(path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Callable running an exported ONNX embedder with ONNX Runtime on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)

    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def openvino_runner(
    path: Path, precision: str = "f32", threads: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Callable running an OpenVINO IR on the CPU (``precision`` f32 or bf16)."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    return lambda x: compiled(x)[compiled.output(0)]


def export(model: nn.Module, out: Path, *, fmt: str, data: Path, count: int = 64,
           min_cosine: float = 0.999) -> dict:
    """Export ``model`` to ``fmt`` at ``out`` and check parity on real crops.

    Returns:
        The parity dict plus {"format", "files"}.

    Raises:
        ParityError: parity not met (the written files are removed).
        ValueError: unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    x = parity_batch(data, tuple(model.input_hw), count=count)
    if fmt == "onnx":
        files = [export_onnx(model, out)]
        run = onnx_runner(files[0])
    else:
        onnx_path = out.with_suffix(".onnx")
        export_onnx(model, onnx_path)
        xml = export_openvino(onnx_path, out)
        files = [xml, xml.with_suffix(".bin"), onnx_path]
        run = openvino_runner(xml)
    report = check_parity(model, run, x, min_cosine=min_cosine)
    report.update(format=fmt, files=[str(f) for f in files])
    if not report["passed"]:
        for f in files:
            Path(f).unlink(missing_ok=True)
        raise ParityError(
            f"{fmt} export of {type(model).__name__} failed parity: min cosine "
            f"{report['min_cosine']:.6f} < {min_cosine} over {report['count']} CUHK01 crops; "
            "the exported files were removed"
        )
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mtmc reid export`` options to ``parser``."""
    parser.add_argument("--weights", type=Path, required=True, help="our .safetensors file")
    parser.add_argument("--format", choices=FORMATS, default="onnx", dest="format")
    parser.add_argument("--out", type=Path, required=True,
                        help="output file (.onnx, or .xml for OpenVINO)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/reid"),
                        help="folder with cuhk01/ for the parity check")
    parser.add_argument("--parity-images", type=int, default=64)
    parser.add_argument("--min-cosine", type=float, default=0.999)


def main(args: argparse.Namespace) -> int:
    """Run ``mtmc reid export``; prints the parity figures and returns the exit code."""
    from pipeline.reid.weights import load_reid_model

    model, _card = load_reid_model(args.weights, device="cpu")
    report = export(model, args.out, fmt=args.format, data=args.data,
                    count=args.parity_images, min_cosine=args.min_cosine)
    print(f"exported {args.weights} -> {', '.join(report['files'])}")
    print(f"parity on {report['count']} CUHK01 crops: min cosine {report['min_cosine']:.6f}, "
          f"mean {report['mean_cosine']:.6f}, max |diff| {report['max_abs_diff']:.2e}")
    return 0
