"""Person detection with Ultralytics YOLO networks (offline, on the CPU).

The network runs in one of four runtimes (``backends.BACKENDS``: LiteRT INT8 exports,
the recovered full-precision PyTorch checkpoints, ONNX Runtime, OpenVINO); letterboxing,
the person filter and NMS are done here, identically for all of them (they follow
Ultralytics' ``LetterBox``/``non_max_suppression``/``scale_boxes`` so results match
``YOLO.predict``). Ultralytics and the runtimes are imported lazily, on the first
detector construction, so importing this package stays cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.detection.backends import BACKENDS, DetectorBackend, infer_backend
from pipeline.geometry import clip_xyxy
from pipeline.precision import parse_precision
from pipeline.registry import lookup
from pipeline.types import Detections

__all__ = ["YoloDetector", "PERSON_CLASS"]

logger = logging.getLogger(__name__)

PERSON_CLASS = 0
"""COCO class index of "person" in every Ultralytics detection model."""

def _imgsz_tuple(imgsz: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return (imgsz, imgsz)
    height, width = imgsz
    return (int(height), int(width))


class YoloDetector:
    """Person detector over a YOLO detection network (COCO classes, 0 = person).

    Detections are returned in the pixel coordinates of the ORIGINAL images (the
    letterbox is undone), as float32 xyxy boxes clipped to the image.

    Attributes:
        backend: Runtime name (a key of ``BACKENDS``).
        imgsz: Network input (height, width) in pixels.
        threads: CPU threads given to the runtime.
        list_call: True when ``detect`` runs all its images in one network call
            (``batch`` and a runtime that batches: PyTorch); False = one call per image.
        resizable: True when the same weights can be built at another input size
            (``.pt`` checkpoints); exported files have a fixed size.

    Example:
        >>> detector = YoloDetector(weights=Path("weights/yolov8n_recovered.pt"),
        ...                         backend="openvino", imgsz=(384, 640))
        >>> per_camera = detector.detect([frame.image_bgr for frame in tick])
    """

    def __init__(
        self,
        *,
        weights: Path,
        backend: str | None = None,
        imgsz: int | tuple[int, int] = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        device: str = "cpu",
        batch: bool = True,
        threads: int | None = None,
        precision: str | None = None,
        cache_dir: Path | None = None,
        streams: int = 1,
    ) -> None:
        """Load the model.

        Args:
            weights: ``.tflite`` (LiteRT), ``.pt`` (Ultralytics checkpoint), ``.onnx``,
                ``.xml`` or a folder (OpenVINO IR).
            backend: "litert", "torch", "onnx" or "openvino"; None infers it from the
                suffix of ``weights``. A ``.pt`` file can run in any backend but LiteRT
                (it is exported to ONNX once, into ``cache_dir``); an ``.onnx`` file in
                ONNX Runtime or OpenVINO.
            imgsz: Network input size, an int (square) or (height, width), pixels,
                multiples of 32. Exported files have a fixed size (LiteRT: 640x640)
                and must be given that size. 16:9 sizes such as (384, 640) cost ~40%
                less than a square input that holds the same frame.
            conf: Minimum person confidence kept, in [0, 1].
            iou: IoU threshold of non-maximum suppression, in [0, 1].
            max_det: Maximum detections kept per image.
            device: Torch device string for the torch backend ("cpu", "cuda:0"); the
                other runtimes always run on the CPU (a warning is logged otherwise).
            batch: Allow one network call with all images of a ``detect`` call when the
                runtime batches (PyTorch). Fixed batch-1 exports always loop; results are
                identical either way.
            threads: CPU threads of the runtime; None = ``os.cpu_count()``. For the
                torch backend this sets ``torch.set_num_threads`` process-wide.
            precision: OpenVINO inference precision, "bf16", "fp32" (or "f32") or "int8"
                (``pipeline.precision``); None keeps
                OpenVINO's default (bf16 on CPUs with AVX512-BF16/AMX, else f32). "int8"
                runs the NNCF-quantised IR made from ``.pt`` weights for this input size
                (``tools/quantize_openvino.py``; f32 with a warning where there is none).
                Ignored by the other backends.
            cache_dir: Where ``.pt`` weights are exported to ONNX for the onnx/openvino
                backends; None = ``$MTMC_CACHE/detectors`` or ``~/.cache/mtmc/detectors``.
            streams: OpenVINO only: CPU streams sharing ``threads``; with 2 or more, the
                images of one ``detect`` call (a tick's frames) run as concurrent
                requests, more frames per second than one 2-thread stream on 2 cores.

        Raises:
            FileNotFoundError: ``weights`` does not exist.
            ValueError: A parameter is out of range, the backend is unknown, or the size
                does not fit a fixed-size export.
            RuntimeError: The model file could not be loaded.
        """
        weights = Path(weights)
        if not weights.exists():
            raise FileNotFoundError(
                f"YOLO weights not found: {weights}. Point detector.weights at an existing "
                "model file (the project ships weights/yolov8n_int8.tflite and "
                "weights/yolov8n_recovered.pt)."
            )
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"conf and iou must be in [0, 1], got conf={conf}, iou={iou}")
        if max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {max_det}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        precision = parse_precision(precision, "detector", allow_none=True)
        if int(streams) < 1:
            raise ValueError(f"streams must be >= 1, got {streams}")
        backend = backend or infer_backend(weights)
        lookup(BACKENDS, backend, "detector backend")
        self.weights = weights
        self.backend = backend
        self.imgsz = _imgsz_tuple(imgsz)
        if self.imgsz[0] % 32 or self.imgsz[1] % 32:
            raise ValueError(f"imgsz must be multiples of 32 (the network stride), got {imgsz}")
        self.conf = float(conf)
        self.iou = float(iou)
        self.max_det = int(max_det)
        self.device = device
        self.batch = bool(batch)
        self.threads = int(threads or os.cpu_count() or 1)
        self.precision = precision
        self.streams = int(streams)
        self._net = self._load(Path(cache_dir) if cache_dir else None)
        self.list_call = self.batch and self._net.batches
        self.resizable = weights.suffix.lower() == ".pt"

    def _load(self, cache_dir: Path | None) -> DetectorBackend:
        try:
            net = BACKENDS[self.backend](
                weights=self.weights, imgsz=self.imgsz, threads=self.threads,
                precision=self.precision, cache_dir=cache_dir, device=self.device,
                streams=self.streams,
            )
            # Run once so errors surface now, not mid-stream (and lazy init is paid here).
            self._forward(net, [np.zeros((*self.imgsz, 3), np.uint8)])
        except (ValueError, FileNotFoundError):
            raise
        except Exception as error:  # runtimes raise many types; name the file
            raise RuntimeError(
                f"Could not load YOLO model {self.weights} with backend {self.backend!r}: "
                f"{error}. Check the file is a YOLO detection model and the runtime "
                "(ai-edge-litert, onnxruntime, openvino) is installed."
            ) from error
        if net.names.get(PERSON_CLASS, "person") != "person":
            raise ValueError(
                f"{self.weights}: class {PERSON_CLASS} is {net.names[PERSON_CLASS]!r}, "
                "expected 'person'; use a COCO-trained detection model."
            )
        logger.info("Loaded YOLO detector %s (backend=%s, imgsz=%s, threads=%d%s)",
                    self.weights, self.backend, self.imgsz, self.threads,
                    "".join(f", {k}={v}" for k, v in (
                        ("precision", getattr(net, "precision", None)),
                        ("streams", getattr(net, "streams", 1))) if v not in (None, 1)))
        return net

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
        if self.list_call:
            return self._forward(self._net, images)
        return [self._forward(self._net, [image])[0] for image in images]

    def _forward(self, net: DetectorBackend, images: list[np.ndarray]) -> list[Detections]:
        batch = np.stack([letterbox(image, self.imgsz) for image in images])  # B,H,W,3 RGB
        batch = batch.astype(np.float32) * np.float32(1.0 / 255.0)
        if net.layout == "nchw":
            batch = batch.transpose(0, 3, 1, 2)
        if net.batches:
            predictions = net(batch)
        else:  # fixed batch-1 export: one call per image
            predictions = np.concatenate([net(batch[i : i + 1]) for i in range(len(batch))])
        return [
            self._decode(pred, image) for pred, image in zip(predictions, images, strict=True)
        ]

    def _decode(self, pred: np.ndarray, image: np.ndarray) -> Detections:
        """(4 + classes, anchors) raw predictions -> person Detections in image pixels."""
        import torch
        import torchvision

        scores = pred[4:]
        # Like Ultralytics with classes=[0]: a box is a person when person is its best class.
        keep = (scores.argmax(0) == PERSON_CLASS) & (scores[PERSON_CLASS] > self.conf)
        cxcywh = pred[:4, keep].T
        score = scores[PERSON_CLASS, keep]
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2,
                               cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        if len(score) > 1:
            order = torchvision.ops.nms(torch.from_numpy(xyxy), torch.from_numpy(score),
                                        self.iou).numpy()[: self.max_det]
            xyxy, score = xyxy[order], score[order]
        height, width = image.shape[:2]
        gain = min(self.imgsz[0] / height, self.imgsz[1] / width)
        pad_x = round((self.imgsz[1] - width * gain) / 2 - 0.1)
        pad_y = round((self.imgsz[0] - height * gain) / 2 - 0.1)
        xyxy = (xyxy - np.array([pad_x, pad_y, pad_x, pad_y], np.float32)) / gain
        return _finalise(xyxy, score, np.zeros(len(score), np.int64), image)

    def __repr__(self) -> str:
        return (
            f"YoloDetector(weights={str(self.weights)!r}, backend={self.backend!r}, "
            f"imgsz={self.imgsz}, conf={self.conf}, iou={self.iou}, "
            f"list_call={self.list_call}, threads={self.threads})"
        )


def letterbox(image_bgr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize keeping the aspect ratio and pad (grey 114) to ``size_hw``, centred.

    Args:
        image_bgr: uint8 (H, W, 3) BGR.
        size_hw: Output (height, width) in pixels.

    Returns:
        uint8 (size_hw[0], size_hw[1], 3) RGB (the colour order the networks expect).
    """
    height, width = image_bgr.shape[:2]
    gain = min(size_hw[0] / height, size_hw[1] / width)
    new_w, new_h = round(width * gain), round(height * gain)
    if (new_w, new_h) != (width, height):
        image_bgr = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (size_hw[1] - new_w) / 2, (size_hw[0] - new_h) / 2
    top, bottom = round(pad_y - 0.1), round(pad_y + 0.1)
    left, right = round(pad_x - 0.1), round(pad_x + 0.1)
    padded = cv2.copyMakeBorder(image_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(114, 114, 114))
    return cv2.cvtColor(padded, cv2.COLOR_BGR2RGB)


def _to_detections(result: Any, image: np.ndarray) -> Detections:
    """Person ``Detections`` from an Ultralytics ``Results`` (for callers of YOLO.predict)."""
    boxes = result.boxes
    if boxes is None:
        return Detections.empty()
    xyxy = boxes.xyxy.cpu().numpy().astype(np.float32).reshape(-1, 4)
    score = boxes.conf.cpu().numpy().astype(np.float32)
    cls = boxes.cls.cpu().numpy().astype(np.int64)
    return _finalise(xyxy, score, cls, image)


def _finalise(xyxy: np.ndarray, score: np.ndarray, cls: np.ndarray,
              image: np.ndarray) -> Detections:
    """Keep persons, clip to the image, drop empty boxes."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    score = np.asarray(score, np.float32)
    keep = cls == PERSON_CLASS
    height, width = image.shape[:2]
    xyxy = clip_xyxy(xyxy[keep], width, height)
    score = score[keep]
    valid = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return Detections(xyxy=xyxy[valid], score=score[valid])
