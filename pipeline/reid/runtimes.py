"""Re-id model runtimes: one class per inference library, like the detector's backends.

Each runtime loads one model and runs ``(n, 3, H, W) float32 -> (n, D) float32`` (not
yet normalised) in one call; it knows its ``input_hw`` and ``embedding_dim`` and, for
our safetensors, the model card. ``RUNTIMES`` maps the config name (``reid.backend``)
to the class; :class:`~pipeline.reid.embedder.CropEmbedder` picks one from it.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RUNTIMES", "OnnxRuntime", "OpenVinoRuntime", "ReidRuntime", "TorchRuntime",
           "TRAIN_HINT", "backend_for", "batch_bucket", "export_onnx"]

logger = logging.getLogger(__name__)

TRAIN_HINT = (
    "train one with `mtmc reid train --model <rga|pfsa|hacnn> ...` or pass the path of an "
    "existing .safetensors/.onnx file"
)


def _check_file(weights: Path | str | None, what: str) -> Path:
    if weights is None:
        raise ValueError(f"no re-id weights given for {what}; {TRAIN_HINT}")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"re-id weights file not found: {path}; {TRAIN_HINT}")
    return path


def export_onnx(model: Any, out: Path, *, opset: int = 20) -> Path:
    """Write ``model`` (eval mode, float32, CPU) as ONNX with a dynamic batch.

    Args:
        model: A REID_MODELS model; its ``input_hw`` fixes H x W.
        out: Destination ``.onnx`` path (parents created).
        opset: ONNX opset (>= 20 for affine_grid in HA-CNN).

    Returns:
        ``out``.
    """
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().cpu().eval()
    h, w = model.input_hw
    dummy = torch.zeros(2, 3, h, w)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which needs
        # onnxscript (not installed here); the TorchScript path is still exact.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), str(out), dynamo=False, opset_version=opset,
            input_names=["images"], output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
        )
    logger.info("wrote ONNX model %s", out)
    return out


class ReidRuntime:
    """Base class: a loaded re-id model and how to run it.

    Attributes:
        input_hw: Model input (height, width) in pixels.
        embedding_dim: Output dimension D (-1 when an ONNX file leaves it dynamic).
        card: The model card of our safetensors file, else None.
    """

    input_hw: tuple[int, int]
    embedding_dim: int
    card: dict | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(n, 3, H, W) float32 -> (n, D) float32 raw embeddings, one model call."""
        raise NotImplementedError

    def _load_module(self, model: object, weights: Path | str | None, device: str) -> Any:
        """The torch re-id module: ``model`` itself or loaded from our safetensors."""
        from torch import nn

        if isinstance(model, nn.Module):
            net = model
        else:
            path = _check_file(weights, f"model {model!r}" if model else "the embedder")
            if path.suffix == ".onnx":
                raise ValueError(f"{path} is an ONNX file; use backend='onnx'")
            from pipeline.reid.weights import load_reid_model

            net, card = load_reid_model(path, device=device)
            self.card = dict(card) if card else None
            if isinstance(model, str) and self.card and self.card.get("model", model) != model:
                raise ValueError(
                    f"{path} holds model {self.card.get('model')!r}, but {model!r} was requested"
                )
        return net.float().to(device).eval()


class TorchRuntime(ReidRuntime):
    """PyTorch (any torch device), optionally under bf16 autocast."""

    def __init__(self, *, model: object, weights: Path | str | None, device: str,
                 threads: int | None, precision: str, input_hw: tuple[int, int] | None) -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.device, self.precision = device, precision
        self._net = self._load_module(model, weights, device)
        self.input_hw = tuple(int(v) for v in self._net.input_hw)
        self.embedding_dim = int(self._net.embedding_dim)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(
            device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        ):
            return self._net(torch.from_numpy(x).to(self.device)).float().cpu().numpy()


class OpenVinoRuntime(ReidRuntime):
    """OpenVINO on the CPU: an ``.xml`` IR, or our safetensors converted at load.

    ``precision="int8"`` with our safetensors runs the NNCF-quantised IR made from them
    (``pipeline.int8.reid_ir``, ``tools/quantize_openvino.py``); the model card still
    comes from the safetensors file, which must be the one the IR was made from.
    """

    def __init__(self, *, model: object, weights: Path | str | None, device: str,
                 threads: int | None, precision: str, input_hw: tuple[int, int] | None) -> None:
        import openvino as ov

        core = ov.Core()
        hint = "f32"
        if precision == "int8":
            weights = self._int8_weights(weights, model)
        elif precision == "bf16":
            if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                hint = "bf16"
            else:
                logger.warning("this CPU has no bf16 support; the re-id model runs in f32")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if weights is not None and Path(weights).suffix == ".xml":
            path = _check_file(weights, "the OpenVINO backend")
            ov_model = _batched_ir(core.read_model(str(path)), path)
            shape = ov_model.inputs[0].get_partial_shape()
            self.input_hw = (shape[2].get_length(), shape[3].get_length())
            self.embedding_dim = ov_model.outputs[0].get_partial_shape()[-1].get_length()
        else:
            net = self._load_module(model, weights, "cpu")
            self.input_hw = tuple(int(v) for v in net.input_hw)
            self.embedding_dim = int(net.embedding_dim)
            # OpenVINO's PyTorch frontend lacks affine_grid (HA-CNN's hard attention);
            # the ONNX route is exact (parity is tested).
            with tempfile.TemporaryDirectory(prefix="mtmc_reid_") as tmp:
                ov_model = ov.convert_model(str(export_onnx(net, Path(tmp) / "reid.onnx")))
        self._compiled = core.compile_model(ov_model, "CPU", config)
        logger.info("re-id model compiled for OpenVINO (%s)",
                    "int8" if precision == "int8" else config["INFERENCE_PRECISION_HINT"])

    def _int8_weights(self, weights: Path | str | None, model: object) -> Path:
        """The INT8 IR of our safetensors ``weights``; the card is read from them."""
        from pipeline.int8 import read_sidecar, reid_ir
        from pipeline.reid.weights import read_card

        path = _check_file(weights, "the OpenVINO backend")
        if path.suffix != ".safetensors":
            raise ValueError(f"re-id precision int8 needs our .safetensors weights (its INT8 "
                             f"IR is found beside them), got {path}")
        ir = reid_ir(path)
        read_sidecar(ir, path, "reid")
        self.card = read_card(path)
        if isinstance(model, str) and self.card and self.card.get("model", model) != model:
            raise ValueError(
                f"{path} holds model {self.card.get('model')!r}, but {model!r} was requested")
        return ir

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        size = batch_bucket(n)
        if size != n:  # zero crops fill the batch to its bucket; their rows are dropped
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
        return self._compiled(x)[self._compiled.output(0)][:n]

    def warm_up(self, max_batch: int) -> None:
        """Compile every batch bucket up to ``max_batch`` now rather than on first use,
        so a live run's memory is flat from its start and no tick waits for a compile."""
        h, w = self.input_hw
        for size in sorted({batch_bucket(n) for n in range(1, max_batch + 1)}):
            self._compiled(np.zeros((size, 3, h, w), np.float32))


def batch_bucket(n: int) -> int:
    """The batch size ``n`` crops run at on OpenVINO: ``n`` up to 4, else the next
    multiple of 4.

    OpenVINO's CPU plugin compiles and keeps kernels for every input shape it meets, 6-20
    MB each for our models. With one call per tick for all cameras' crops, batch sizes
    of every value from 1 to ``reid.batch_size`` turn up over hours of a live run, and
    the run's memory grew in steps for the whole hour (docs/LIVE.md). Padding to these
    buckets bounds the shapes (11 up to 32 crops) for up to 3 blank crops (~4 ms) a call.
    """
    return n if n <= 4 else -(-n // 4) * 4


def _batched_ir(ov_model: Any, path: Path) -> Any:
    """``ov_model`` with a dynamic batch dimension (many IRs, e.g. Intel's Open Model
    Zoo re-id models, are saved for batch 1), so one call embeds a whole tick's crops.

    Raises:
        ValueError: the model is not one N x 3 x H x W image input with a fixed H x W.
    """
    import openvino as ov

    if len(ov_model.inputs) != 1:
        raise ValueError(f"{path}: a re-id model needs exactly one input, this one has "
                         f"{len(ov_model.inputs)}")
    inp = ov_model.inputs[0]
    shape = inp.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[1].is_dynamic or \
            shape[1].get_length() != 3 or shape[2].is_dynamic or shape[3].is_dynamic:
        raise ValueError(f"{path}: expected an N x 3 x H x W image input with fixed H, W; "
                         f"got {shape}")
    if shape[0].is_static:
        h, w = shape[2].get_length(), shape[3].get_length()
        ov_model.reshape({inp.get_any_name(): ov.PartialShape([-1, 3, h, w])})
    return ov_model


class OnnxRuntime(ReidRuntime):
    """ONNX Runtime on the CPU, from an exported ``.onnx`` file."""

    def __init__(self, *, model: object, weights: Path | str | None, device: str,
                 threads: int | None, precision: str, input_hw: tuple[int, int] | None) -> None:
        import onnxruntime as ort

        path = _check_file(weights, "the ONNX backend")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        h, w = inp.shape[2], inp.shape[3]
        if isinstance(h, int) and isinstance(w, int):
            self.input_hw = (h, w)
        elif input_hw is None:
            raise ValueError(f"{path} has a dynamic input size; pass input_hw=(H, W)")
        else:
            self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        out_dim = self._session.get_outputs()[0].shape[-1]
        self.embedding_dim = int(out_dim) if isinstance(out_dim, int) else -1
        # ONNX Runtime cannot reshape a graph saved for a fixed batch: run it per crop.
        batch = inp.shape[0]
        self._fixed_batch = batch if isinstance(batch, int) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._fixed_batch is None or len(x) == self._fixed_batch:
            return self._session.run(None, {self._input_name: x})[0]
        if self._fixed_batch != 1:
            raise ValueError(f"this ONNX model takes batches of exactly {self._fixed_batch}")
        return np.concatenate([self._session.run(None, {self._input_name: x[i:i + 1]})[0]
                               for i in range(len(x))])


def model_digest(weights: Path | str) -> str:
    """Hex SHA-256 of a re-id model's bytes: the file, and for an OpenVINO ``.xml`` IR
    its ``.bin`` too (the weights live there), so a changed model is told apart."""
    import hashlib

    path = Path(weights)
    digest = hashlib.sha256()
    for part in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def backend_for(weights: Path | str) -> str:
    """The runtime a model file needs by its suffix: onnx for ``.onnx``, openvino for an
    ``.xml`` IR, torch for our safetensors."""
    return {".onnx": "onnx", ".xml": "openvino"}.get(Path(weights).suffix, "torch")


RUNTIMES: dict[str, type[ReidRuntime]] = {"onnx": OnnxRuntime, "openvino": OpenVinoRuntime,
                                          "torch": TorchRuntime}
"""Re-id runtimes by config name (``reid.backend``)."""
