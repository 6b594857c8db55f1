"""Trackers on PETS09-S2L1 seen by a moving camera: camera-motion compensation measured.

PETS09's camera stands still. A moving one is made from it: each frame is cut to a
576x432 window that moves over the 768x576 picture along a path, and the ground truth
is moved with it (boxes clipped to the window; those less than half inside are left
out, as a person leaving the view is). The shipped detector (``configs/pets09_s2l1.yaml``)
runs on the windows, once per path; every tracker gets the same boxes:

* ``ours off`` / ``ours on`` / ``ours auto``: our tracker (motion only, the shipped
  options, told the video's 10 fps) without compensation, with ``CameraMotion`` every
  frame, and with the default ``auto`` (a check a second);
* ``ul-bytetrack``; ``ul-botsort`` with the window images (its own sparse optical-flow
  compensation, ``gmc_method: sparseOptFlow``, on).

Paths (``PATHS``): ``still`` (the window fixed in the middle: the control), ``pan``
(sweeping sideways, 96 px each way, turning every 4 s), ``shake`` (a hand-held camera's
random walk, pulled back to the middle, ~6 px per frame). Prints one markdown table and
the cost of the estimate (ms per frame, median); ``--json`` writes every metric.

    python3 -m benchmarks.moving_camera --json runs/moving_camera.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.public_detections import PETS, evaluate
from benchmarks.tracker_adapters import run_ultralytics
from pipeline.evaluation.mot import read_mot_txt
from pipeline.types import Detections

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
VIEW_WH = (576, 432)
FPS = 10.0  # the video's rate, as the pipeline runs it


def window_path(name: str, frames: int, image_wh: tuple[int, int]) -> np.ndarray:
    """(frames, 2) top-left corner of the window per frame (integer pixels)."""
    room = np.array(image_wh) - np.array(VIEW_WH)
    centre = room / 2.0
    if name == "still":
        path = np.tile(centre, (frames, 1))
    elif name == "pan":
        t = np.arange(frames) / FPS
        phase = (t % 8.0) / 4.0  # 0..2: out and back every 8 s
        x = np.where(phase < 1.0, phase, 2.0 - phase) * room[0]
        path = np.column_stack([x, np.full(frames, centre[1])])
    elif name == "shake":
        rng = np.random.default_rng(0)
        path, p = [], centre.copy()
        for _ in range(frames):
            p = p + rng.normal(0.0, 6.0, 2) + 0.1 * (centre - p)
            p = np.clip(p, 0, room)
            path.append(p.copy())
        path = np.array(path)
    else:
        raise ValueError(f"unknown path {name!r}; choose one of {', '.join(PATHS)}")
    return np.round(path).astype(int)


PATHS = ("still", "pan", "shake")


def moved_gt(gt: np.ndarray, path: np.ndarray) -> np.ndarray:
    """gt rows in window pixels: clipped to it, those less than half inside dropped."""
    out = []
    for row in gt:
        x0, y0 = path[int(row[0]) - 1]
        left, top, w, h = row[2] - x0, row[3] - y0, row[4], row[5]
        cl, ct = max(left, 0.0), max(top, 0.0)
        cr, cb = min(left + w, VIEW_WH[0]), min(top + h, VIEW_WH[1])
        if cr <= cl or cb <= ct or (cr - cl) * (cb - ct) < 0.5 * w * h:
            continue
        new = row.copy()
        new[2:6] = [cl, ct, cr - cl, cb - ct]
        out.append(new)
    return np.array(out)


def windows(path: np.ndarray, frames: int):
    """The video's frames cut to the window."""
    capture = cv2.VideoCapture(str(PETS / "vtest.avi"))
    for n in range(frames):
        ok, image = capture.read()
        if not ok:
            break
        x0, y0 = path[n]
        yield np.ascontiguousarray(image[y0:y0 + VIEW_WH[1], x0:x0 + VIEW_WH[0]])
    capture.release()


def detect_all(images: list[np.ndarray]) -> list[Detections]:
    """The shipped PETS09 detector on every window."""
    from pipeline.config import load_config
    from pipeline.detection import YoloDetector

    config = load_config(REPO / "configs" / "pets09_s2l1.yaml")
    params = {k: v for k, v in config.detector.params.items() if k != "streams"}
    detector = YoloDetector(**params)
    return [detector.detect([image])[0] for image in images]


def run_ours(frames: list[Detections], images: list[np.ndarray], mode: str
             ) -> tuple[np.ndarray, list[float], int]:
    """Our tracker with ``CameraMotion(mode)``: MOT rows, estimate ms per frame, frames
    compensated."""
    from benchmarks.tracker_adapters import _rows
    from pipeline.config import load_config
    from pipeline.tracking import ByteTracker, TrackerOptions
    from pipeline.tracking.camera_motion import CameraMotion

    params = load_config(REPO / "configs" / "pets09_s2l1_motion_only.yaml").tracker.params
    tracker = ByteTracker(TrackerOptions.from_params(params), fps=FPS)
    motion = CameraMotion(mode=mode, fps=FPS)
    rows, cost = [], []
    for number, (dets, image) in enumerate(zip(frames, images, strict=True), 1):
        start = time.perf_counter()
        warp = motion(image, dets.xyxy)
        cost.append(1000 * (time.perf_counter() - start))
        if warp is not None:
            tracker.compensate(warp)
        out = tracker.update(dets)
        rows.append(_rows(number, out.track_id, out.xyxy, out.score))
    return np.concatenate(rows), cost, motion.moving_frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="*", default=list(PATHS), choices=PATHS)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    gt = read_mot_txt(PETS / "gt" / "gt.txt")
    width = int(cv2.VideoCapture(str(PETS / "vtest.avi")).get(cv2.CAP_PROP_FRAME_WIDTH))
    frames = int(gt[:, 0].max()) if args.max_frames is None else args.max_frames
    gt = gt[gt[:, 0] <= frames]
    results: dict[str, dict] = {}
    for name in args.paths:
        path = window_path(name, frames, (width, 576))
        images = list(windows(path, frames))
        detections = detect_all(images)
        truth = moved_gt(gt, path)
        row: dict[str, dict] = {}
        for mode in ("off", "on", "auto"):
            rows, cost, compensated = run_ours(detections, images, mode)
            row[f"ours {mode}"] = {**evaluate(truth, rows, frames),
                                   "estimate_ms_median": round(statistics.median(cost), 2),
                                   "estimate_ms_mean": round(statistics.fmean(cost), 2),
                                   "compensated_frames": compensated}
        row["ul-bytetrack"] = evaluate(truth, run_ultralytics(detections, "bytetrack"), frames)
        row["ul-botsort"] = evaluate(truth, run_ultralytics(detections, "botsort", images),
                                     frames)
        results[name] = row
        print(f"{name}: done", file=sys.stderr)
    print("| path | tracker | HOTA | IDF1 | MOTA | IDSW | estimate ms/frame (mean) |"
          " frames compensated |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in results.items():
        for tracker, m in row.items():
            print(f"| {name} | {tracker} | {100 * m['HOTA']:.1f} | {100 * m['IDF1']:.1f} | "
                  f"{100 * m['MOTA']:.1f} | {m['IDSW']:.0f} | {m.get('estimate_ms_mean', '')} |"
                  f" {m.get('compensated_frames', '')} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"view_wh": VIEW_WH, "frames": frames,
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
