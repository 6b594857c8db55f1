"""Crop embedder: person boxes in camera images -> L2-normalised re-id embeddings.

This is the one place where colour order changes: images arrive as BGR uint8
(OpenCV / ``pipeline.types.Frame``) and are converted to RGB exactly once, here,
before ImageNet normalisation. Crops of all cameras at one tick are embedded
together, in batches of ``batch_size`` (one model call per batch).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.precision import parse_precision
from pipeline.registry import lookup
from pipeline.reid.runtimes import RUNTIMES, TRAIN_HINT

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "BACKENDS", "INPUT_PRESETS", "CropEmbedder",
           "InputSpec", "TRAIN_HINT", "crop_boxes", "input_spec_for", "l2_normalise",
           "preprocess_crops"]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # RGB
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)  # RGB



@dataclass(frozen=True)
class InputSpec:
    """What a re-id model expects of its input pixels.

    The model input is ``(pixel * scale - mean) / std`` per channel, with pixels
    0..255 in ``colour_order`` and ``mean``/``std`` given in that same channel order.

    Attributes:
        colour_order: "rgb" or "bgr".
        scale: Factor applied to 0..255 pixel values first (1/255 for 0..1 inputs).
        mean, std: Per-channel normalisation after scaling (model channel order).
    """

    colour_order: str = "rgb"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = tuple(float(v) for v in IMAGENET_MEAN)
    std: tuple[float, float, float] = tuple(float(v) for v in IMAGENET_STD)

    def __post_init__(self) -> None:
        if self.colour_order not in ("rgb", "bgr"):
            raise ValueError(f"input colour_order must be 'rgb' or 'bgr', got "
                             f"{self.colour_order!r}")
        if not self.scale > 0:
            raise ValueError(f"input scale must be > 0, got {self.scale}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"input {name} needs 3 values (one per channel), got {value}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if min(self.std) <= 0:
            raise ValueError(f"input std must be > 0, got {self.std}")

    @classmethod
    def parse(cls, value: object, *, where: str = "re-id input") -> InputSpec:
        """A preset name (``INPUT_PRESETS``), a mapping, or a JSON object string."""
        if isinstance(value, InputSpec):
            return value
        if isinstance(value, str) and value in INPUT_PRESETS:
            return INPUT_PRESETS[value]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f"{where}: {value!r} is neither a preset "
                                 f"({', '.join(INPUT_PRESETS)}) nor a JSON object") from None
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a preset name or a mapping with "
                             "colour_order, scale, mean, std")
        unknown = set(value) - {"colour_order", "scale", "mean", "std"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}; keys: "
                             "colour_order, scale, mean, std")
        try:
            return cls(**value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


INPUT_PRESETS: dict[str, InputSpec] = {
    # Our models, torchreid's and most PyTorch re-id exports.
    "imagenet": InputSpec(),
    # Intel Open Model Zoo person-reidentification-retail-*: BGR 0..255, no normalisation.
    "bgr255": InputSpec(colour_order="bgr", scale=1.0, mean=(0.0, 0.0, 0.0),
                        std=(1.0, 1.0, 1.0)),
}


def input_spec_for(weights: Path | str | None, declared: object = None) -> InputSpec:
    """The input a model file expects: ``declared`` (config / command line) if given,
    else a ``<file stem>.input.json`` beside the file, else ImageNet RGB.

    Raises:
        ValueError: a malformed declaration (names the file or the option).
    """
    if declared is not None:
        return InputSpec.parse(declared)
    if weights is not None:
        sidecar = Path(weights).with_name(Path(weights).stem + ".input.json")
        if sidecar.is_file():
            try:
                data = json.loads(sidecar.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{sidecar}: not valid JSON ({exc})") from None
            return InputSpec.parse(data, where=str(sidecar))
    return INPUT_PRESETS["imagenet"]


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
    spec: InputSpec | None = None,
) -> np.ndarray:
    """Resize, put in the model's colour order and normalise crops.

    Args:
        crops: uint8 (h, w, 3) crops, BGR if ``bgr`` else RGB.
        input_hw: Model input (height, width) in pixels.
        bgr: Whether the crops are BGR (converted here, once, if the model wants RGB).
        interpolation: "linear", "area" or "cubic" (OpenCV resize mode).
        spec: What the model expects; None = ImageNet-normalised RGB.

    Returns:
        (N, 3, H, W) float32 in ``spec``'s colour order and normalisation.
    """
    spec = spec or INPUT_PRESETS["imagenet"]
    out_h, out_w = input_hw
    mode = _INTERP[interpolation]
    batch = np.empty((len(crops), out_h, out_w, 3), np.uint8)
    for i, crop in enumerate(crops):
        if crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(f"crop {i} must be (h, w, 3) uint8, got shape {crop.shape}")
        batch[i] = cv2.resize(crop, (out_w, out_h), interpolation=mode)
    if bgr != (spec.colour_order == "bgr"):
        batch = batch[..., ::-1]
    # Transpose the uint8 pixels first, then normalise whole channel planes in place:
    # arithmetic broadcast over a trailing axis of 3 is ~8x slower in numpy, and was a
    # third of the embedder's time (benchmarks/reid_embedder_speed.py, docs/REID.md).
    x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)
    std = np.asarray(spec.std, np.float32)
    # (x * s - m) / d = (x - m / s) * (s / d)
    x -= (np.asarray(spec.mean, np.float32) / np.float32(spec.scale))[None, :, None, None]
    x *= (np.float32(spec.scale) / std)[None, :, None, None]
    return x


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """(N, D) rows scaled to length 1, as float32 (zero rows stay zero)."""
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
        precision: Arithmetic for the torch and openvino backends (``pipeline.precision``):
            "fp32" (or "f32"), or "bf16"
            (torch autocast / OpenVINO inference precision; faster on CPUs with
            AVX-512 BF16, and the arithmetic the shipped HA-CNN was trained in), or
            "int8" (openvino only: the NNCF-quantised IR beside the safetensors file,
            ``pipeline.int8``). Outputs are float32 either way.
        flip: Test-time augmentation: embed each crop and its mirror image and keep
            the normalised mean (twice the model work per crop).
        input_spec: The input the model expects (colour order, scale, mean/std): an
            :class:`InputSpec`, a preset name (``INPUT_PRESETS``: "imagenet",
            "bgr255"), a mapping or JSON; None = a ``<stem>.input.json`` beside the
            weights, else ImageNet RGB (our models and torchreid's).

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
        input_spec: object = None,
    ) -> None:
        precision = parse_precision(precision, "re-id")
        if precision == "int8" and backend != "openvino":
            raise ValueError("re-id precision int8 runs on the openvino backend only (its "
                             f"NNCF-quantised IR), not {backend!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if interpolation not in _INTERP:
            choices = ", ".join(sorted(_INTERP))
            raise ValueError(f"unknown interpolation {interpolation!r}; choose one of: {choices}")
        lookup(RUNTIMES, backend, "re-id backend")
        self.batch_size = batch_size
        self.backend = backend
        self.device = device
        self.interpolation = interpolation
        self.precision = precision
        self.threads = threads
        self.flip = bool(flip)
        self.input_spec = input_spec_for(weights, input_spec)
        self.runtime = RUNTIMES[backend](model=model, weights=weights, device=device,
                                         threads=threads, precision=precision,
                                         input_hw=input_hw)
        self.card = self.runtime.card
        self.input_hw = (tuple(int(v) for v in input_hw) if input_hw is not None
                         else self.runtime.input_hw)
        self.embedding_dim = self.runtime.embedding_dim

    def warm_up(self) -> None:
        """Compile the runtime's batch shapes now (OpenVINO; a no-op for the others): a
        live run calls this once before its cameras start."""
        warm = getattr(self.runtime, "warm_up", None)
        if warm is not None:
            warm(self.batch_size * (2 if self.flip else 1))

    def _run(self, x: np.ndarray) -> np.ndarray:
        """(n, 3, H, W) float32 -> (n, D) float32 L2-normalised, one model call."""
        return l2_normalise(np.asarray(self.runtime(x)).reshape(len(x), -1))

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
            x = preprocess_crops(chunk, self.input_hw, bgr=bgr, interpolation=self.interpolation,
                                 spec=self.input_spec)
            if self.flip:
                both = self._run(np.concatenate([x, np.ascontiguousarray(x[..., ::-1])]))
                outs.append(l2_normalise(both[: len(x)] + both[len(x) :]))
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
