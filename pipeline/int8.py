"""INT8 OpenVINO models made from our float weights, and how a run finds them.

Both networks can run as INT8 OpenVINO IR files quantised post-training with NNCF
(``tools/quantize_openvino.py``); a run that asks for ``precision: int8`` loads the IR
that sits beside the float weights it was made from:

* detector ``weights/yolov8n_recovered.pt`` at input 384x640 ->
  ``weights/yolov8n_recovered.int8-384x640.xml`` (+ ``.bin``; one file per input size,
  the head's anchors are fixed at export);
* re-id ``weights/hacnn_cuhk.safetensors`` -> ``weights/hacnn_cuhk.int8.xml``.

Each IR has a JSON sidecar (same stem, ``.json``) with the SHA-256 of the float file it
came from, the calibration data and the NNCF version: a float file changed after
quantisation is refused rather than silently paired with stale INT8 weights. This module
only finds and checks files; NNCF is needed only to make them (the ``int8`` extra).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["QUANTIZE_HINT", "Int8Missing", "detector_ir", "read_sidecar", "reid_ir",
           "sha256"]

QUANTIZE_HINT = "make it with `python3 tools/quantize_openvino.py {what} --weights {weights}{size}`"


class Int8Missing(FileNotFoundError):
    """No INT8 IR beside the float weights (for that input size)."""


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def detector_ir(weights: Path, imgsz: tuple[int, int]) -> Path:
    """Path of the INT8 IR of detector ``weights`` (a ``.pt``) at input ``imgsz``."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}.int8-{imgsz[0]}x{imgsz[1]}.xml")


def reid_ir(weights: Path) -> Path:
    """Path of the INT8 IR of re-id ``weights`` (a ``.safetensors``)."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}.int8.xml")


def read_sidecar(ir: Path, source: Path, what: str, size: str = "") -> dict[str, Any]:
    """The checked sidecar of an INT8 IR made from ``source``.

    Args:
        ir: The ``.xml`` file.
        source: The float weights it must have been made from.
        what: "detector" or "reid" (for the hint in errors).
        size: " --imgsz HxW" for detectors (for the hint).

    Raises:
        Int8Missing: The IR, its ``.bin`` or its sidecar is missing.
        ValueError: The IR was made from another float file.
    """
    hint = QUANTIZE_HINT.format(what=what, weights=source, size=size)
    sidecar = ir.with_suffix(".json")
    for path in (ir, ir.with_suffix(".bin"), sidecar):
        if not path.is_file():
            raise Int8Missing(f"no INT8 model {path} for {source}; {hint}")
    info = json.loads(sidecar.read_text())
    if info.get("source_sha256") != sha256(source):
        raise ValueError(f"{ir} was made from another version of {source} (its SHA-256 "
                         f"differs from {sidecar}'s source_sha256); {hint} again")
    return info
