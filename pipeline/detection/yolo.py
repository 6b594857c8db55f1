"""Person detection with an Ultralytics YOLO model (offline, CPU by default).

The shipped weights are INT8 LiteRT exports (``*.tflite``, fixed 640x640 input,
batch 1, COCO-80 with class 0 = person). They load through ``ultralytics.YOLO``
when the ``ai-edge-litert`` package is installed. Ultralytics is imported lazily,
on the first detector construction, so importing this package stays cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.geometry import clip_xyxy
from pipeline.types import Detections

__all__ = ["YoloDetector", "PERSON_CLASS"]

logger = logging.getLogger(__name__)

PERSON_CLASS = 0
"""COCO class index of "person" in every Ultralytics detection model."""

_YOLO_CLASS: Any = None


def _import_yolo() -> Any:
    """Import ``ultralytics.YOLO`` once, offline, without side effects on thread settings.

    Importing ultralytics changes process-wide state: it calls ``cv2.setNumThreads(0)``
    and may change torch's intra-op thread count. Both are restored so the composition
    root stays in control of threading. Its settings are forced offline in memory only
    (the user's settings file is never written).
    """
    global _YOLO_CLASS
    if _YOLO_CLASS is not None:
        return _YOLO_CLASS
    # Must be set before ultralytics.utils is first imported: ONLINE is computed at import.
    os.environ["YOLO_OFFLINE"] = "1"
    import cv2
    import torch

    torch_threads = torch.get_num_threads()
    cv2_threads = cv2.getNumThreads()
    try:
        from ultralytics import YOLO
        from ultralytics.utils import SETTINGS
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)
    # dict.update bypasses the JSON persistence of SettingsManager.update.
    dict.update(SETTINGS, {"sync": False, "hub": False})
    _YOLO_CLASS = YOLO
    return YOLO


def _imgsz_tuple(imgsz: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return (imgsz, imgsz)
    height, width = imgsz
    return (int(height), int(width))


class YoloDetector:
    """Person detector over an Ultralytics YOLO model.

    Detections are returned in the pixel coordinates of the ORIGINAL images (the
    letterbox is undone), as float32 xyxy boxes clipped to the image.

    Attributes:
        list_call: True when ``detect`` passes all its images to the model in one call
            (``batch`` and a backend that batches); False = one call per image.

    Example:
        >>> detector = YoloDetector(weights=Path("weights/yolov8n_int8.tflite"))
        >>> per_camera = detector.detect([frame.image_bgr for frame in tick])
    """

    def __init__(
        self,
        *,
        weights: Path,
        imgsz: int | tuple[int, int] = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        device: str = "cpu",
        batch: bool = True,
        threads: int | None = None,
    ) -> None:
        """Load the model.

        Args:
            weights: Model file (``.tflite``, ``.onnx``, ``.pt``...). LiteRT exports have
                a fixed 640x640 input, so ``imgsz`` must stay 640 for them.
            imgsz: Network input size, an int (square) or (height, width), pixels.
            conf: Minimum person confidence kept, in [0, 1].
            iou: IoU threshold of non-maximum suppression, in [0, 1].
            max_det: Maximum detections kept per image.
            device: Ultralytics device string ("cpu", "cuda:0", ...).
            batch: Allow one ``predict`` call with all images of a ``detect`` call. It is
                used only when the backend really batches (PyTorch or dynamic-batch
                exports, or a fixed export batch > 1): fixed batch-1 exports such as the
                LiteRT INT8 files are split into single images inside Ultralytics anyway,
                and the list call measured no faster than a loop (see ``list_call``).
                Results are identical either way.
            threads: CPU threads of the LiteRT interpreter; None keeps Ultralytics'
                default (cpu_count - 1, at most 8 — i.e. 1 on a 2-core machine).

        Raises:
            FileNotFoundError: ``weights`` does not exist.
            ValueError: A parameter is out of range.
            RuntimeError: The model file could not be loaded.
        """
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(
                f"YOLO weights not found: {weights}. Point detector.weights at an existing "
                "model file (the project ships weights/yolov8n_int8.tflite)."
            )
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"conf and iou must be in [0, 1], got conf={conf}, iou={iou}")
        if max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {max_det}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        self.weights = weights
        self.imgsz = _imgsz_tuple(imgsz)
        self.conf = float(conf)
        self.iou = float(iou)
        self.max_det = int(max_det)
        self.device = device
        self.batch = bool(batch)
        self.threads = threads
        self._model = self._load()
        self.list_call = self.batch and _backend_batches(self._model)

    def _load(self) -> Any:
        yolo_class = _import_yolo()
        from ultralytics.nn.backends import litert

        default_threads = litert.NUM_THREADS
        if self.threads is not None:
            # The LiteRT backend reads this module constant when it builds the interpreter.
            litert.NUM_THREADS = self.threads
        try:
            model = yolo_class(str(self.weights), task="detect")
            # Run once so the backend is built now (errors surface here, not mid-stream).
            model.predict(
                np.zeros((self.imgsz[0], self.imgsz[1], 3), np.uint8), **self._predict_args()
            )
        except Exception as error:  # ultralytics raises many types; name the file
            raise RuntimeError(
                f"Could not load YOLO model {self.weights}: {error}. For .tflite files "
                "install ai-edge-litert; check the file is a detection model."
            ) from error
        finally:
            litert.NUM_THREADS = default_threads
        names = getattr(model, "names", {}) or {}
        if names.get(PERSON_CLASS, "person") != "person":
            raise ValueError(
                f"{self.weights}: class {PERSON_CLASS} is {names[PERSON_CLASS]!r}, expected "
                "'person'; use a COCO-trained detection model."
            )
        logger.info("Loaded YOLO detector %s (imgsz=%s)", self.weights, self.imgsz)
        return model

    def _predict_args(self) -> dict[str, Any]:
        return {
            "imgsz": list(self.imgsz),
            "conf": self.conf,
            "iou": self.iou,
            "max_det": self.max_det,
            "classes": [PERSON_CLASS],
            "device": self.device,
            "verbose": False,
        }

    def detect(self, images_bgr: Sequence[np.ndarray]) -> list[Detections]:
        """Detect persons in a batch of images (e.g. the frames of all cameras of a tick).

        Args:
            images_bgr: uint8 (H, W, 3) BGR images; sizes may differ.

        Returns:
            One ``Detections`` per image, in input order: float32 (N, 4) xyxy boxes in
            that image's pixel coordinates, clipped to it, and float32 (N,) scores.
            Embeddings are empty (N, 0).
        """
        images = list(images_bgr)
        if not images:
            return []
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"detect() image {i} must be uint8 (H, W, 3) BGR, got "
                    f"{image.dtype} {image.shape}"
                )
        args = self._predict_args()
        if self.list_call:
            results = self._model.predict(images, **args)
        else:
            results = [self._model.predict(image, **args)[0] for image in images]
        pairs = zip(results, images, strict=True)
        return [_to_detections(result, image) for result, image in pairs]

    def __repr__(self) -> str:
        return (
            f"YoloDetector(weights={str(self.weights)!r}, imgsz={self.imgsz}, conf={self.conf}, "
            f"iou={self.iou}, list_call={self.list_call}, threads={self.threads})"
        )


def _backend_batches(model: Any) -> bool:
    """Whether the loaded backend runs several images in one forward pass."""
    backend = getattr(getattr(model, "predictor", None), "model", None)
    if backend is None:
        return True
    if getattr(backend, "format", "pt") == "pt":
        return True
    metadata = getattr(backend, "metadata", None) or {}
    return bool(metadata.get("dynamic")) or int(getattr(backend, "batch", 1)) > 1


def _to_detections(result: Any, image: np.ndarray) -> Detections:
    boxes = result.boxes
    if boxes is None:
        return Detections.empty()
    xyxy = boxes.xyxy.cpu().numpy().astype(np.float32).reshape(-1, 4)
    score = boxes.conf.cpu().numpy().astype(np.float32)
    cls = boxes.cls.cpu().numpy().astype(np.int64)
    keep = cls == PERSON_CLASS  # classes=[0] already filters; keep the guarantee local
    height, width = image.shape[:2]
    xyxy = clip_xyxy(xyxy[keep], width, height)
    score = score[keep]
    valid = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return Detections(xyxy=xyxy[valid], score=score[valid])
