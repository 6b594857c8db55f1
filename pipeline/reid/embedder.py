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

from pipeline.reid.runtimes import RUNTIMES, TRAIN_HINT

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "BACKENDS", "CropEmbedder", "TRAIN_HINT",
           "crop_boxes", "preprocess_crops"]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # RGB
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)  # RGB

_INTERP = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}

BACKENDS = tuple(sorted(RUNTIMES))


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
            AVX-512 BF16, and the arithmetic the shipped HA-CNN was trained in), or
            "int8" (openvino only: the NNCF-quantised IR beside the safetensors file,
            ``pipeline.int8``). Outputs are float32 either way.
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
        if precision not in ("fp32", "bf16", "int8"):
            raise ValueError(f"unknown re-id precision {precision!r}; choose one of: bf16, "
                             "fp32, int8")
        if precision == "int8" and backend != "openvino":
            raise ValueError("re-id precision int8 runs on the openvino backend only (its "
                             f"NNCF-quantised IR), not {backend!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if interpolation not in _INTERP:
            choices = ", ".join(sorted(_INTERP))
            raise ValueError(f"unknown interpolation {interpolation!r}; choose one of: {choices}")
        if backend not in RUNTIMES:
            raise ValueError(f"unknown re-id backend {backend!r}; choose one of: "
                             f"{', '.join(BACKENDS)}")
        self.batch_size = batch_size
        self.backend = backend
        self.device = device
        self.interpolation = interpolation
        self.precision = precision
        self.threads = threads
        self.flip = bool(flip)
        self.runtime = RUNTIMES[backend](model=model, weights=weights, device=device,
                                         threads=threads, precision=precision,
                                         input_hw=input_hw)
        self.card = self.runtime.card
        self.input_hw = (tuple(int(v) for v in input_hw) if input_hw is not None
                         else self.runtime.input_hw)
        self.embedding_dim = self.runtime.embedding_dim

    def _run(self, x: np.ndarray) -> np.ndarray:
        """(n, 3, H, W) float32 -> (n, D) float32 L2-normalised, one model call."""
        return _l2n(np.asarray(self.runtime(x)).reshape(len(x), -1))

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
