"""Person detectors: images in, ``Detections`` (original pixel coordinates) out."""

from __future__ import annotations

from pipeline.detection.backends import BACKENDS, infer_backend
from pipeline.detection.yolo import PERSON_CLASS, YoloDetector

__all__ = ["BACKENDS", "DETECTORS", "PERSON_CLASS", "YoloDetector", "infer_backend"]

DETECTORS: dict[str, type] = {"yolo": YoloDetector}
"""Detector families by config name."""
