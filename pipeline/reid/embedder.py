"""Crop embedder: person boxes in camera images -> L2-normalised re-id embeddings.

This is the one place where colour order changes: images arrive as BGR uint8
(OpenCV / ``pipeline.types.Frame``) and are converted to RGB exactly once, here,
before ImageNet normalisation. Crops of all cameras at one tick are embedded
together, in batches of ``batch_size`` (one model call per batch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CropEmbedder", "crop_boxes", "preprocess_crops"]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # RGB
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)  # RGB

_INTERP = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}

BACKENDS = ("onnx", "openvino", "torch")

TRAIN_HINT = (
    "train one with `mtmc reid train --model <rga|pfsa|hacnn> ...` or pass the path of an "
    "existing .safetensors/.onnx file"
)


def crop_boxes(image: np.ndarray, boxes_xyxy: np.ndarray) -> list[np.ndarray]:
    """Cut boxes out of one image, clipped to the image.

    Args:
        image: (H, W, C) array (any colour order; returned crops keep it).
        boxes_xyxy: (N, 4) pixel boxes x1, y1, x2, y2 (float ok).

    Returns:
        N crops (views into ``image``), each at least 1 x 1 pixel: a box that is
        degenerate or lies outside the image is reduced to the nearest in-image
        pixel so every detection still gets an embedding (a poor one, which the
        tracker's appearance gating tolerates better than a missing row).
    """
    h, w = image.shape[:2]
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    x1 = np.clip(np.floor(boxes[:, 0]), 0, w - 1).astype(int)
    y1 = np.clip(np.floor(boxes[:, 1]), 0, h - 1).astype(int)
    x2 = np.clip(np.ceil(boxes[:, 2]), 0, w).astype(int)
    y2 = np.clip(np.ceil(boxes[:, 3]), 0, h).astype(int)
    x2 = np.maximum(x2, x1 + 1)
    y2 = np.maximum(y2, y1 + 1)
    return [image[y1[i] : y2[i], x1[i] : x2[i]] for i in range(len(boxes))]


def preprocess_crops(
    crops: Sequence[np.ndarray],
    input_hw: tuple[int, int],
    *,
    bgr: bool = True,
    interpolation: str = "linear",
) -> np.ndarray:
    """Resize, convert to RGB and ImageNet-normalise crops.

    Args:
        crops: uint8 (h, w, 3) crops, BGR if ``bgr`` else RGB.
        input_hw: Model input (height, width) in pixels.
        bgr: Whether the crops are BGR (converted to RGB here, once).
        interpolation: "linear", "area" or "cubic" (OpenCV resize mode).

    Returns:
        (N, 3, H, W) float32, RGB, ImageNet mean/std normalised.
    """
    out_h, out_w = input_hw
    mode = _INTERP[interpolation]
    batch = np.empty((len(crops), out_h, out_w, 3), np.uint8)
    for i, crop in enumerate(crops):
        if crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(f"crop {i} must be (h, w, 3) uint8, got shape {crop.shape}")
        batch[i] = cv2.resize(crop, (out_w, out_h), interpolation=mode)
    if bgr:
        batch = batch[..., ::-1]
    x = (batch.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class CropEmbedder:
    """Embeds person crops with a re-id model (PyTorch, OpenVINO or ONNX Runtime).

    Args:
        model: A loaded re-id ``nn.Module`` (used as is; the caller owns its
            weights), or a registry name checked against the weights' model card,
            or None to take the model from ``weights``.
        weights: ``.safetensors`` file written by ``mtmc reid train`` (torch and
            openvino backends; openvino converts it at load, through ONNX, in a few
            seconds), an OpenVINO ``.xml`` IR (openvino backend) or an ``.onnx`` file
            (onnx backend). Required unless ``model`` is an ``nn.Module``: random
            weights are never used silently.
        device: Torch device string ("cpu", "cuda"); the other backends run on the CPU.
        batch_size: Crops per model call.
        backend: "torch", "openvino" or "onnx".
        threads: Intra-op threads for torch / OpenVINO / onnxruntime; None leaves the
            library default (note that importing ultralytics changes torch's).
        input_hw: Model input (height, width); only needed for ONNX files whose
            input size is dynamic.
        interpolation: Resize mode, see :func:`preprocess_crops`.
        precision: Arithmetic for the torch and openvino backends: "fp32", or "bf16"
            (torch autocast / OpenVINO inference precision; faster on CPUs with
            AVX-512 BF16, and the arithmetic the shipped HA-CNN was trained in).
            Outputs are float32 either way.
        flip: Test-time augmentation: embed each crop and its mirror image and keep
            the normalised mean (twice the model work per crop).

    Raises:
        FileNotFoundError: the weights file is missing (the message says how to get one).
        ValueError: inconsistent arguments.
    """

    def __init__(
        self,
        *,
        model: object | None = None,
        weights: Path | str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        backend: str = "torch",
        threads: int | None = None,
        input_hw: tuple[int, int] | None = None,
        interpolation: str = "linear",
        precision: str = "fp32",
        flip: bool = False,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown re-id precision {precision!r}; choose one of: bf16, fp32")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if interpolation not in _INTERP:
            choices = ", ".join(sorted(_INTERP))
            raise ValueError(f"unknown interpolation {interpolation!r}; choose one of: {choices}")
        self.batch_size = batch_size
        self.backend = backend
        self.device = device
        self.interpolation = interpolation
        self.precision = precision
        self.threads = threads
        self.flip = bool(flip)
        self.card: dict | None = None
        self._session = None
        self._model = None
        self._compiled = None
        if backend == "torch":
            self._init_torch(model, weights, device, threads)
        elif backend == "openvino":
            self._init_openvino(model, weights, threads)
        elif backend == "onnx":
            self._init_onnx(weights, threads, input_hw)
        else:
            raise ValueError(f"unknown re-id backend {backend!r}; choose one of: "
                             f"{', '.join(BACKENDS)}")
        if input_hw is not None:
            self.input_hw = (int(input_hw[0]), int(input_hw[1]))

    # -- construction ---------------------------------------------------------------------------
    @staticmethod
    def _check_file(weights: Path | str | None, what: str) -> Path:
        if weights is None:
            raise ValueError(f"no re-id weights given for {what}; {TRAIN_HINT}")
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"re-id weights file not found: {path}; {TRAIN_HINT}")
        return path

    def _load_module(self, model: object, weights: Path | str | None, device: str):
        """The torch re-id module: ``model`` itself or loaded from our safetensors."""
        from torch import nn

        if isinstance(model, nn.Module):
            net = model
        else:
            path = self._check_file(weights, f"model {model!r}" if model else "the embedder")
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

    def _init_torch(self, model: object, weights: Path | str | None, device: str,
                    threads: int | None) -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        net = self._load_module(model, weights, device)
        self._model = net
        self.input_hw = tuple(int(v) for v in net.input_hw)
        self.embedding_dim = int(net.embedding_dim)

    def _init_openvino(self, model: object, weights: Path | str | None,
                       threads: int | None) -> None:
        import openvino as ov

        core = ov.Core()
        hint = "f32"
        if self.precision == "bf16":
            if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                hint = "bf16"
            else:
                logger.warning("this CPU has no bf16 support; the re-id model runs in f32")
        config = {"INFERENCE_PRECISION_HINT": hint}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if weights is not None and Path(weights).suffix == ".xml":
            path = self._check_file(weights, "the OpenVINO backend")
            ov_model = core.read_model(str(path))
            shape = ov_model.inputs[0].get_partial_shape()
            self.input_hw = (shape[2].get_length(), shape[3].get_length())
            self.embedding_dim = ov_model.outputs[0].get_partial_shape()[-1].get_length()
        else:
            import tempfile

            from pipeline.reid.export import export_onnx

            net = self._load_module(model, weights, "cpu")
            self.input_hw = tuple(int(v) for v in net.input_hw)
            self.embedding_dim = int(net.embedding_dim)
            # OpenVINO's PyTorch frontend lacks affine_grid (HA-CNN's hard attention);
            # the ONNX route is exact (parity is tested).
            with tempfile.TemporaryDirectory(prefix="mtmc_reid_") as tmp:
                ov_model = ov.convert_model(str(export_onnx(net, Path(tmp) / "reid.onnx")))
        self._compiled = core.compile_model(ov_model, "CPU", config)
        logger.info("re-id model compiled for OpenVINO (%s)", config["INFERENCE_PRECISION_HINT"])

    def _init_onnx(self, weights: Path | str | None, threads: int | None,
                   input_hw: tuple[int, int] | None) -> None:
        import onnxruntime as ort

        path = self._check_file(weights, "the ONNX backend")
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
        out_dim = self._session.get_outputs()[0].shape[-1]
        self.embedding_dim = int(out_dim) if isinstance(out_dim, int) else -1

    # -- inference ------------------------------------------------------------------------------
    def _run(self, x: np.ndarray) -> np.ndarray:
        """(n, 3, H, W) float32 -> (n, D) float32 L2-normalised, one model call."""
        if self._compiled is not None:
            out = self._compiled(x)[self._compiled.output(0)]
        elif self._session is not None:
            out = self._session.run(None, {self._input_name: x})[0]
        else:
            import torch

            device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
            with torch.inference_mode(), torch.autocast(
                device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
            ):
                out = self._model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
        return _l2n(out.reshape(len(x), -1))

    def embed_crops(self, crops: Sequence[np.ndarray], *, bgr: bool = True) -> np.ndarray:
        """Embed ready-cut crops.

        Args:
            crops: uint8 (h, w, 3) crops, BGR if ``bgr`` else RGB.
            bgr: Colour order of ``crops``.

        Returns:
            (N, D) float32, L2-normalised rows; (0, D) for no crops.
        """
        outs = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            x = preprocess_crops(chunk, self.input_hw, bgr=bgr, interpolation=self.interpolation)
            if self.flip:
                both = self._run(np.concatenate([x, np.ascontiguousarray(x[..., ::-1])]))
                outs.append(_l2n(both[: len(x)] + both[len(x) :]))
            else:
                outs.append(self._run(x))
        if not outs:
            return np.zeros((0, max(self.embedding_dim, 0)), np.float32)
        return np.concatenate(outs, axis=0)

    def embed(
        self, images_bgr: Sequence[np.ndarray], boxes_xyxy: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """Embed every box of every image (typically one image per camera at one tick).

        Args:
            images_bgr: Images, uint8 (H, W, 3) BGR.
            boxes_xyxy: Per image, (N_i, 4) pixel boxes x1, y1, x2, y2.

        Returns:
            Per image, (N_i, D) float32 L2-normalised embeddings (row order = box order).
        """
        if len(images_bgr) != len(boxes_xyxy):
            raise ValueError(f"{len(images_bgr)} images but {len(boxes_xyxy)} box arrays")
        crops: list[np.ndarray] = []
        counts = []
        for image, boxes in zip(images_bgr, boxes_xyxy, strict=True):
            these = crop_boxes(image, boxes)
            crops.extend(these)
            counts.append(len(these))
        emb = self.embed_crops(crops, bgr=True)
        splits = np.cumsum(counts)[:-1]
        return [np.ascontiguousarray(part) for part in np.split(emb, splits, axis=0)]
