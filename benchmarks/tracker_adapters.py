"""Run our tracker and the ultralytics trackers on the same per-frame detections.

Shared by ``noise_study.py``, ``public_detections.py`` and ``peer_trackers.py``: every
tracker gets the identical ``Detections`` of a frame and its output becomes MOTChallenge
rows ``frame, id, left, top, width, height, score, -1, -1, -1`` (1-based frames) for
``pipeline.evaluation.mot``.

Ultralytics trackers (``ultralytics.trackers.BYTETracker`` / ``BOTSORT``) are built from
their shipped YAML defaults (the ones ``YOLO.track`` uses) and fed a small results-like
object: their ``update`` only needs ``conf``, ``cls``, ``xywh``, ``len`` and boolean
indexing. BoT-SORT runs with ``with_reid: False`` (its default); its camera-motion
compensation needs the frame, so it is off when no image is given.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")

from pipeline.types import Detections

ULTRALYTICS_TRACKERS = ("bytetrack", "botsort")


class ResultsLike:
    """The subset of ultralytics' ``Boxes`` that its trackers read.

    Args:
        xyxy: (N, 4) pixel boxes.
        conf: (N,) scores.
        cls: (N,) class ids (default 0 = person).
    """

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray | None = None) -> None:
        self.xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        self.conf = np.asarray(conf, np.float32).reshape(-1)
        self.cls = np.zeros(len(self.conf), np.float32) if cls is None else np.asarray(cls)

    @property
    def xywh(self) -> np.ndarray:
        """(N, 4) centre x, centre y, width, height."""
        out = self.xyxy.copy()
        out[:, 2:] -= out[:, :2]
        out[:, :2] += out[:, 2:] / 2
        return out

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> ResultsLike:
        return ResultsLike(self.xyxy[index], self.conf[index], self.cls[index])


def ultralytics_tracker(kind: str, **overrides: Any) -> Any:
    """A fresh ultralytics tracker with its shipped ``<kind>.yaml`` defaults.

    Args:
        kind: "bytetrack" or "botsort".
        overrides: YAML keys to change (e.g. ``track_buffer=30``).
    """
    if kind not in ULTRALYTICS_TRACKERS:
        raise ValueError(f"unknown ultralytics tracker {kind!r}; choose {ULTRALYTICS_TRACKERS}")
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    cfg = YAML.load(check_yaml(f"{kind}.yaml"))
    cfg.update(overrides)
    if kind == "botsort":
        cfg["with_reid"] = False
    cfg = IterableSimpleNamespace(**cfg)
    cfg.device = "cpu"
    return TRACKER_MAP[cfg.tracker_type](args=cfg)


def _rows(frame: int, ids: np.ndarray, xyxy: np.ndarray, score: np.ndarray) -> np.ndarray:
    out = np.full((len(ids), 10), -1.0)
    out[:, 0] = frame
    out[:, 1] = ids
    out[:, 2:4] = xyxy[:, :2]
    out[:, 4:6] = xyxy[:, 2:4] - xyxy[:, :2]
    out[:, 6] = score
    return out


def run_ours(frames: Sequence[Detections], make_tracker: Callable[[], Any]) -> np.ndarray:
    """Our tracker (``update(Detections) -> Tracks``) over a sequence -> (M, 10) MOT rows."""
    tracker = make_tracker()
    rows = []
    for number, dets in enumerate(frames, 1):
        tracks = tracker.update(dets)
        rows.append(_rows(number, tracks.track_id, tracks.xyxy, tracks.score))
    return np.concatenate(rows) if rows else np.zeros((0, 10))


def run_ultralytics(frames: Sequence[Detections], kind: str,
                    images: Iterable[np.ndarray] | None = None) -> np.ndarray:
    """An ultralytics tracker over a sequence -> (M, 10) MOT rows (its Kalman boxes).

    Args:
        frames: One ``Detections`` per frame (embeddings are ignored).
        kind: "bytetrack" or "botsort".
        images: Optional BGR frames, aligned with ``frames`` (BoT-SORT's camera-motion
            compensation uses them).
    """
    tracker = ultralytics_tracker(kind)
    image_iter = iter(images) if images is not None else None
    rows = []
    for number, dets in enumerate(frames, 1):
        image = next(image_iter) if image_iter is not None else None
        out = tracker.update(ResultsLike(dets.xyxy, dets.score), image)
        if len(out):
            rows.append(_rows(number, out[:, 4], out[:, :4], out[:, 5]))
    return np.concatenate(rows) if rows else np.zeros((0, 10))


def timed(fn: Callable[..., np.ndarray], *args: Any, **kwargs: Any) -> tuple[np.ndarray, float]:
    """``fn(*args, **kwargs)`` and its wall time in seconds."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def save_mot(path: Path, rows: np.ndarray) -> None:
    """Write MOT rows (frame,id,left,top,width,height,score,-1,-1,-1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, rows, fmt="%d,%d,%.2f,%.2f,%.2f,%.2f,%.4f,%d,%d,%d")
