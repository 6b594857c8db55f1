"""Inference runtimes for YOLO detection networks: LiteRT, PyTorch, ONNX Runtime, OpenVINO.

Every runtime wraps one network behind the same call: a float32 batch of letterboxed RGB
images in [0, 1] goes in, raw predictions (B, 4 + classes, anchors) come out, with boxes
as centre-x, centre-y, width, height in input pixels. Pre- and post-processing (letterbox,
person filter, NMS) live in ``yolo.py`` and are shared, so backends differ only in the
network call and parity between them is a property of the weights alone.

Thread counts are applied deliberately per runtime (each has its own pool; two pools on a
2-core CPU fight, so only the active runtime gets threads):

* ``torch``: ``torch.set_num_threads`` — process-wide, it also applies to re-id in PyTorch;
* ``onnx``: ``intra_op_num_threads``, one inter-op thread, no spin-waiting (spinning
  threads steal the cores the other stages need);
* ``openvino``: ``INFERENCE_NUM_THREADS``, one stream and the latency hint (or ``streams``
  streams sharing those threads, a tick's frames in flight together), precision hint
  (``bf16`` or ``f32``; None keeps OpenVINO's default, bf16 on CPUs with AVX512-BF16/AMX;
  ``int8`` loads the NNCF-quantised IR beside a ``.pt``, see ``pipeline.int8``);
* ``litert``: the interpreter's ``num_threads``.

A ``.pt`` file served by ``onnx``/``openvino`` is exported once to an ONNX file in a cache
folder (name = weights content hash + input size), offline with ``torch.onnx.export``;
OpenVINO reads the ONNX file directly.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.precision import parse_precision

__all__ = ["BACKENDS", "DetectorBackend", "default_cache_dir", "infer_backend", "onnx_export"]

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
SUFFIX_BACKEND = {".tflite": "litert", ".pt": "torch", ".onnx": "onnx", ".xml": "openvino"}


def infer_backend(weights: Path) -> str:
    """Backend name for a weights file from its suffix (a directory = OpenVINO model dir).

    Raises:
        ValueError: The suffix is not one of .tflite, .pt, .onnx, .xml.
    """
    if weights.is_dir():
        return "openvino"
    try:
        return SUFFIX_BACKEND[weights.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"Cannot infer the detector backend of {weights}: use one of "
            f"{', '.join(SUFFIX_BACKEND)} or set detector.backend explicitly."
        ) from None


def default_cache_dir() -> Path:
    """Folder for ONNX exports made at run time: $MTMC_CACHE or $XDG_CACHE_HOME/mtmc."""
    if os.environ.get("MTMC_CACHE"):
        return Path(os.environ["MTMC_CACHE"]) / "detectors"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mtmc" / "detectors"


def _warn_cpu_only(name: str, device: str) -> None:
    if device != "cpu":
        logger.warning("The %s detector backend runs on the CPU; device %r is ignored.",
                       name, device)


class DetectorBackend:
    """Base class: one network, fixed input size, ``__call__(batch) -> predictions``.

    Attributes:
        input_hw: Network input (height, width) in pixels.
        layout: "nchw" or "nhwc" — the layout ``__call__`` expects.
        batches: True when one call may carry several images (else batch size 1).
        names: Class names by index (from the model's metadata).
    """

    input_hw: tuple[int, int]
    layout = "nchw"
    batches = False
    names: dict[int, str]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run the network.

        Args:
            batch: float32 (B, 3, H, W) (or (B, H, W, 3) for NHWC), RGB in [0, 1].

        Returns:
            float32 (B, 4 + classes, anchors): cx, cy, w, h in input pixels, then class
            scores in [0, 1].
        """
        raise NotImplementedError


class LiteRtBackend(DetectorBackend):
    """A LiteRT (``.tflite``) export; fixed input size, batch 1, NHWC."""

    layout = "nhwc"

    def __init__(self, *, weights: Path, imgsz: tuple[int, int], threads: int,
                 device: str = "cpu", **_: Any) -> None:
        from ai_edge_litert.interpreter import Interpreter

        _warn_cpu_only("litert", device)
        self._interpreter = Interpreter(model_path=str(weights), num_threads=threads)
        self._interpreter.allocate_tensors()
        source = self._interpreter.get_input_details()[0]
        if source["dtype"] != np.float32:
            raise ValueError(f"{weights}: only float-input LiteRT exports are supported")
        self.input_hw = (int(source["shape"][1]), int(source["shape"][2]))
        _check_fixed_size(weights, self.input_hw, imgsz)
        self._input = source["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self.names = _zip_metadata_names(weights)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(batch, np.float32))
        self._interpreter.invoke()
        out = self._interpreter.get_tensor(self._output).copy()
        # Ultralytics' LiteRT exports give boxes normalised by the input size.
        out[:, [0, 2]] *= self.input_hw[1]
        out[:, [1, 3]] *= self.input_hw[0]
        return out


class TorchBackend(DetectorBackend):
    """An Ultralytics checkpoint (``.pt``) run in PyTorch (BN fused, inference mode)."""

    batches = True

    def __init__(self, *, weights: Path, imgsz: tuple[int, int], threads: int,
                 device: str = "cpu", **_: Any) -> None:
        import torch

        self._device = torch.device(device)
        self._model = load_torch_model(weights).to(self._device)
        self.names = dict(self._model.names)
        self.input_hw = imgsz
        self.threads = threads
        torch.set_num_threads(threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self._model(torch.from_numpy(np.ascontiguousarray(batch)).to(self._device))
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float().cpu().numpy()


class OnnxBackend(DetectorBackend):
    """An ONNX file (or a ``.pt`` exported to one) run by ONNX Runtime on the CPU."""

    def __init__(self, *, weights: Path, imgsz: tuple[int, int], threads: int,
                 cache_dir: Path | None = None, device: str = "cpu", **_: Any) -> None:
        import onnxruntime as ort

        _warn_cpu_only("onnx", device)
        path, self.names = _onnx_file(weights, imgsz, cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        source = self._session.get_inputs()[0]
        self._input = source.name
        self.input_hw = _static_hw(source.shape, imgsz, weights)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: np.ascontiguousarray(batch, np.float32)})[0]


class OpenVinoBackend(DetectorBackend):
    """An OpenVINO IR (``.xml``/dir), an ONNX file, or a ``.pt`` via ONNX, on the CPU.

    ``precision="int8"`` with a ``.pt`` loads the INT8 IR made from it for this input size
    (``pipeline.int8.detector_ir``); when there is none the network runs in f32 with a
    warning that says how to make one. ``streams > 1`` compiles that many CPU streams
    sharing ``threads`` and runs a batch's images as concurrent requests (``batches``).
    """

    def __init__(self, *, weights: Path, imgsz: tuple[int, int], threads: int,
                 precision: str | None = None, cache_dir: Path | None = None,
                 device: str = "cpu", streams: int = 1, **_: Any) -> None:
        import openvino as ov

        _warn_cpu_only("openvino", device)
        if weights.is_dir():
            xmls = sorted(weights.glob("*.xml"))
            if len(xmls) != 1:
                raise ValueError(f"{weights}: expected exactly one .xml model, found {len(xmls)}")
            weights = xmls[0]
        core = ov.Core()
        int8 = None
        if precision == "int8":
            int8 = _int8_ir(weights, imgsz)
            precision = None if int8 is None else "fp32"  # for the layers kept float
        if int8 is not None:
            path, self.names = int8
        elif weights.suffix.lower() == ".xml":
            path, self.names = weights, _openvino_names(weights)
        else:
            path, self.names = _onnx_file(weights, imgsz, cache_dir)
        model = core.read_model(str(path))
        self.input_hw = _static_hw(list(model.inputs[0].get_partial_shape()), imgsz, weights)
        self.streams = int(streams)
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY" if self.streams == 1 else "THROUGHPUT",
            "NUM_STREAMS": self.streams,
            "INFERENCE_NUM_THREADS": int(threads),
        }
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = {"bf16": ov.Type.bf16, "fp32": ov.Type.f32}[
                precision]
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self.batches = self.streams > 1
        self._queue = ov.AsyncInferQueue(self._compiled, self.streams) if self.batches else None
        self.precision = ("int8" if int8 is not None else parse_precision(
            self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(), "detector"))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self._queue is None or len(batch) == 1:
            self._request.infer({0: np.ascontiguousarray(batch[:1], np.float32)})
            return self._request.get_output_tensor(0).data.copy()
        out: list[np.ndarray | None] = [None] * len(batch)

        def done(request: Any, index: int) -> None:
            out[index] = request.get_output_tensor(0).data.copy()

        self._queue.set_callback(done)
        for i in range(len(batch)):
            self._queue.start_async({0: np.ascontiguousarray(batch[i : i + 1], np.float32)}, i)
        self._queue.wait_all()
        return np.concatenate(out)


def _int8_ir(weights: Path, imgsz: tuple[int, int]) -> tuple[Path, dict[int, str]] | None:
    """The INT8 IR of ``.pt`` weights at ``imgsz`` and its class names; None (warned) if none."""
    from pipeline.int8 import Int8Missing, detector_ir, read_sidecar

    if weights.suffix.lower() != ".pt":
        raise ValueError(f"detector precision int8 needs .pt weights (its INT8 IR is found "
                         f"beside them), got {weights}")
    ir = detector_ir(weights, imgsz)
    try:
        info = read_sidecar(ir, weights, "detector", f" --imgsz {imgsz[0]}x{imgsz[1]}")
    except Int8Missing as missing:
        logger.warning("%s; running this input size in f32", missing)
        return None
    return ir, {int(k): str(v) for k, v in info.get("names", {}).items()}


BACKENDS: dict[str, type[DetectorBackend]] = {
    "litert": LiteRtBackend,
    "torch": TorchBackend,
    "onnx": OnnxBackend,
    "openvino": OpenVinoBackend,
}
"""Detector runtimes by config name (``detector.backend``)."""


def load_torch_model(weights: Path) -> Any:
    """An Ultralytics detection checkpoint as a fused float32 eval-mode ``nn.Module``."""
    from pipeline.detection.ultralytics_import import import_yolo

    model = import_yolo()(str(weights), task="detect").model
    return model.float().fuse(verbose=False).eval()


def onnx_export(weights: Path, imgsz: tuple[int, int], out: Path) -> Path:
    """Export an Ultralytics ``.pt`` to ONNX at a fixed (height, width), batch 1, offline.

    Uses the TorchScript-based ``torch.onnx.export`` (the dynamo exporter needs
    onnxscript, and Ultralytics' own exporter may try to install packages). The class
    names are stored in the ONNX metadata (``names``), as Ultralytics does.
    """
    import onnx
    import torch

    model = load_torch_model(weights)
    detect = model.model[-1]
    detect.export, detect.format = True, "onnx"  # plain (B, 4+nc, anchors) output
    dummy = torch.zeros(1, 3, *imgsz)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    threads = torch.get_num_threads()
    try:
        torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["images"], output_names=["output0"])
    finally:
        torch.set_num_threads(threads)
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "names", repr(dict(model.names))
    onnx.save(proto, str(tmp))
    tmp.replace(out)  # atomic: a concurrent run never sees half a file
    logger.info("Exported %s to %s (input %s)", weights, out, imgsz)
    return out


def _onnx_file(weights: Path, imgsz: tuple[int, int],
               cache_dir: Path | None) -> tuple[Path, dict[int, str]]:
    if weights.suffix.lower() == ".pt":
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
        out = (cache_dir or default_cache_dir()) / (
            f"{weights.stem}-{digest}-{imgsz[0]}x{imgsz[1]}-op{ONNX_OPSET}.onnx")
        if not out.is_file():
            onnx_export(weights, imgsz, out)
        weights = out
    import onnx

    proto = onnx.load(str(weights), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    return weights, _parse_names(meta.get("names"))


def _parse_names(text: str | None) -> dict[int, str]:
    import ast

    if not text:
        return {}
    return {int(k): str(v) for k, v in ast.literal_eval(text).items()}


def _openvino_names(xml: Path) -> dict[int, str]:
    """Names from Ultralytics' metadata.yaml beside an OpenVINO export, if present."""
    meta = xml.parent / "metadata.yaml"
    if not meta.is_file():
        return {}
    import yaml

    return {int(k): str(v) for k, v in (yaml.safe_load(meta.read_text()) or {}).get(
        "names", {}).items()}


def _zip_metadata_names(tflite: Path) -> dict[int, str]:
    import json
    import zipfile

    try:
        with zipfile.ZipFile(tflite) as archive:
            return _parse_names(repr(json.loads(archive.read("metadata.json"))["names"]))
    except (zipfile.BadZipFile, KeyError):
        return {}


def _static_hw(shape: list[Any], imgsz: tuple[int, int], weights: Path) -> tuple[int, int]:
    """(H, W) of a static NCHW input; a dynamic input takes ``imgsz``."""
    try:
        hw = (int(shape[2]), int(shape[3]))
    except (TypeError, ValueError, RuntimeError):
        return imgsz
    _check_fixed_size(weights, hw, imgsz)
    return hw


def _check_fixed_size(weights: Path, hw: tuple[int, int], imgsz: tuple[int, int]) -> None:
    if hw != imgsz:
        raise ValueError(
            f"{weights} has a fixed {hw[0]}x{hw[1]} input but detector.imgsz is "
            f"{imgsz[0]}x{imgsz[1]}; set imgsz to {list(hw)} or use the .pt weights "
            "(exported at run time at any size)."
        )
