"""Importing Ultralytics once, offline, without side effects (detection's only door to it).

Both the detector and the backends' ``.pt`` loader need ``ultralytics.YOLO``; it lives
here so neither imports the other.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["import_yolo"]

_YOLO_CLASS: Any = None


def import_yolo() -> Any:
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
