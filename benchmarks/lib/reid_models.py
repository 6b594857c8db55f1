"""Re-id models for benchmarks by file: ours and the peers through one embedder."""

from __future__ import annotations

from pathlib import Path

from pipeline.reid.embedder import CropEmbedder
from pipeline.reid.runtimes import backend_for

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = REPO.parent / "shared" / "data" / "weights"
PEERS = {
    "osnet_x0_25_msmt17 (peer)": f"{WEIGHTS / 'osnet_x0_25_msmt17.onnx'}",
    **{f"intel {n} (peer)":
       f"{WEIGHTS / 'intel_omz' / f'person-reidentification-retail-{n}.xml'}@bgr255"
       for n in ("0288", "0287", "0286", "0277")},
}
"""The peer rows of every re-id table: the OSNet-x0.25 MSMT17 ONNX file and Intel's Open
Model Zoo IRs (BGR 0-255 input, declared with ``@bgr255``)."""


def embedder_for(spec: str, *, threads: int, precision: str = "fp32",
                 batch_size: int = 64) -> CropEmbedder:
    """A CropEmbedder for ``PATH[@INPUT]``: ONNX Runtime for .onnx, OpenVINO for .xml,
    PyTorch for our safetensors; INPUT is a declared input (``mtmc reid eval --input``)."""
    path, _, declared = spec.partition("@")
    backend = backend_for(path)
    return CropEmbedder(weights=Path(path), backend=backend, device="cpu",
                        batch_size=batch_size, threads=threads, input_spec=declared or None,
                        precision=precision if backend != "onnx" else "fp32")
