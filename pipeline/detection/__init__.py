"""Person detectors: images in, ``Detections`` (original pixel coordinates) out."""

from __future__ import annotations

from typing import Any

from pipeline.detection.backends import BACKENDS, infer_backend
from pipeline.detection.yolo import PERSON_CLASS, YoloDetector

__all__ = ["BACKENDS", "DETECTORS", "PERSON_CLASS", "YoloDetector", "build_detector",
           "infer_backend"]

DETECTORS: dict[str, type] = {"yolo": YoloDetector}
"""Detector families by config name."""


def build_detector(name: str, **kwargs: Any) -> YoloDetector:
    """Construct the detector registered as ``name`` with keyword arguments.

    Raises:
        ValueError: ``name`` is not in ``DETECTORS`` (the message lists the choices).
    """
    try:
        detector_class = DETECTORS[name]
    except KeyError:
        raise ValueError(
            f"Unknown detector {name!r}; choose one of: {', '.join(sorted(DETECTORS))}"
        ) from None
    return detector_class(**kwargs)
