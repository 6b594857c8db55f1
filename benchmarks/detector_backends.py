"""Detector backends and input sizes: ms/frame, person recall, parity with the INT8 model.

For each (backend, input size) the script runs ``YoloDetector.detect`` one frame at a
time on every ``--step``-th frame of PETS09-S2L1 and reports

* ``ms_median`` / ``ms_p90``: wall time of one ``detect`` call (letterbox + network +
  NMS) after a warm-up call; configurations take turns frame by frame so they share
  the same background load, and ``time_vs_int8`` (median ratio to the LiteRT INT8
  model in the same run) is the figure to compare across machines and runs;
* ``recall`` / ``precision`` at IoU 0.5 against the MOTChallenge gt (all gt rows);
* ``match_int8_iou90``: share of this configuration's boxes matched one-to-one to the
  INT8 LiteRT (640x640) boxes of the same architecture at IoU >= 0.9 (only meaningful
  at the same input size; ``int8_matched_iou90`` = the share of INT8 boxes matched).

and the same recall/parity on the MOT17-mini frames (all 12, gt rows with
``consider=1, class=1``). Prints one JSON document. Times depend on the CPU load: report
ratios from one run, not absolute numbers from different runs.

    nice -n 10 python3 -m benchmarks.detector_backends --step 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.detection import YoloDetector
from pipeline.geometry import iou_matrix, linear_assignment, tlwh_to_xyxy

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PETS = DATA / "video" / "pets09_s2l1"
MOT = DATA / "mot" / "MOT17-mini" / "train"

INT8 = DATA / "weights" / "yolov8n_int8.tflite"
RECOVERED = ROOT / "weights" / "yolov8n_recovered.pt"
INT8_11 = DATA / "weights" / "yolo11n_int8.tflite"
RECOVERED_11 = ROOT / "weights" / "yolo11n_recovered.pt"
REFERENCE = {"yolov8n": "litert-int8 640x640", "yolo11n": "yolo11n litert-int8 640x640"}
CONFIGS = [  # (name, weights, backend, imgsz, precision); references first
    ("litert-int8 640x640", INT8, "litert", (640, 640), None),
    ("torch 640x640", RECOVERED, "torch", (640, 640), None),
    ("torch 384x640", RECOVERED, "torch", (384, 640), None),
    ("onnx 640x640", RECOVERED, "onnx", (640, 640), None),
    ("onnx 384x640", RECOVERED, "onnx", (384, 640), None),
    ("onnx 576x1024", RECOVERED, "onnx", (576, 1024), None),
    ("openvino-f32 384x640", RECOVERED, "openvino", (384, 640), "f32"),
    ("openvino-int8 384x640", RECOVERED, "openvino", (384, 640), "int8"),  # NNCF
    ("openvino-bf16 640x640", RECOVERED, "openvino", (640, 640), "bf16"),
    ("openvino-bf16 384x640", RECOVERED, "openvino", (384, 640), "bf16"),
    ("openvino-bf16 480x640", RECOVERED, "openvino", (480, 640), "bf16"),
    ("openvino-bf16 576x768", RECOVERED, "openvino", (576, 768), "bf16"),  # PETS09 native
    ("openvino-bf16 576x1024", RECOVERED, "openvino", (576, 1024), "bf16"),
    ("yolo11n litert-int8 640x640", INT8_11, "litert", (640, 640), None),
    ("yolo11n torch 640x640", RECOVERED_11, "torch", (640, 640), None),
    ("yolo11n onnx 384x640", RECOVERED_11, "onnx", (384, 640), None),
    ("yolo11n openvino-bf16 384x640", RECOVERED_11, "openvino", (384, 640), "bf16"),
]


def pets_frames(step: int) -> dict[int, np.ndarray]:
    """Every ``step``-th frame of PETS09-S2L1, keyed by 1-based gt frame number."""
    capture = cv2.VideoCapture(str(PETS / "vtest.avi"))
    frames, n = {}, 0
    while True:
        ok = capture.grab()
        if not ok:
            break
        n += 1
        if (n - 1) % step == 0:
            frames[n] = capture.retrieve()[1]
    capture.release()
    return frames


def mot_frames() -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, gt xyxy) of the MOT17-mini frames (evaluated pedestrians only)."""
    out = []
    for sequence in sorted(MOT.iterdir()):
        gt = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",")
        gt = gt[(gt[:, 6] == 1) & (gt[:, 7] == 1)]
        for n, file in enumerate(sorted((sequence / "img1").glob("*.jpg")), start=1):
            out.append((cv2.imread(str(file)), tlwh_to_xyxy(gt[gt[:, 0] == n][:, 2:6])))
    return out


def n_matched(a: np.ndarray, b: np.ndarray, min_iou: float) -> int:
    matches, _, _ = linear_assignment(1.0 - iou_matrix(a, b), max_cost=1.0 - min_iou)
    return len(matches)


def run_round_robin(detectors: dict[str, YoloDetector], images: list[np.ndarray],
                    timed: bool, *, scores: bool = False) -> tuple[dict[str, list],
                                                                 dict[str, list[float]]]:
    """Boxes and per-call ms of every detector on every image, interleaved.

    Detectors take turns on each image (the starting one rotates), so a change of the
    machine's load during the run hits all of them alike and their ratios stay fair.
    With ``scores`` each image's entry is ``(xyxy, score)`` instead of ``xyxy``.
    """
    names = list(detectors)
    boxes: dict[str, list[np.ndarray]] = {n: [None] * len(images) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    if timed:
        for name in names:  # warm-up
            detectors[name].detect(images[:1])
    for i, image in enumerate(images):
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            start = time.perf_counter()
            dets = detectors[name].detect([image])[0]
            times[name].append((time.perf_counter() - start) * 1000)
            boxes[name][i] = (dets.xyxy, dets.score) if scores else dets.xyxy
    return boxes, times


def score(boxes: list[np.ndarray], gts: list[np.ndarray],
          reference: list[np.ndarray] | None) -> dict:
    """Recall/precision at IoU 0.5 vs gt; one-to-one IoU >= 0.9 agreement with reference."""
    hit = sum(n_matched(b, g, 0.5) for b, g in zip(boxes, gts, strict=True))
    n_gt, n_det = sum(len(g) for g in gts), sum(len(b) for b in boxes)
    result = {"recall": round(hit / n_gt, 4), "precision": round(hit / max(n_det, 1), 4),
              "n_gt": n_gt, "n_det": n_det}
    if reference is not None:
        same = sum(n_matched(b, r, 0.9) for b, r in zip(boxes, reference, strict=True))
        result["match_int8_iou90"] = round(same / max(n_det, 1), 4)
        result["int8_matched_iou90"] = round(same / max(sum(len(r) for r in reference), 1), 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=5, help="use every step-th PETS frame")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="config names to run")
    args = parser.parse_args()
    frames = pets_frames(args.step)
    gt = np.loadtxt(PETS / "gt" / "gt.txt", delimiter=",")
    pets_gt = [tlwh_to_xyxy(gt[gt[:, 0] == n][:, 2:6]) for n in frames]
    pets_images = list(frames.values())
    mot = mot_frames()
    report = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "threads": args.threads, "pets_frames": len(pets_images), "mot_frames": len(mot),
              "load_average_start": os.getloadavg(), "results": {}}
    with tempfile.TemporaryDirectory() as cache:
        detectors = {}
        for name, weights, backend, imgsz, precision in CONFIGS:
            reference_name = REFERENCE["yolo11n" if "yolo11n" in name else "yolov8n"]
            if args.only and name not in args.only and name != reference_name:
                continue
            detectors[name] = YoloDetector(weights=weights, backend=backend, imgsz=imgsz,
                                           threads=args.threads, precision=precision,
                                           cache_dir=Path(cache))
        pets_boxes, pets_ms = run_round_robin(detectors, pets_images, timed=True)
        mot_boxes, _ = run_round_robin(detectors, [m[0] for m in mot], timed=False)
    base = statistics.median(pets_ms[REFERENCE["yolov8n"]]) if REFERENCE["yolov8n"] in pets_ms \
        else None
    for name in detectors:
        reference_name = REFERENCE["yolo11n" if "yolo11n" in name else "yolov8n"]
        is_ref = name == reference_name
        pets = score(pets_boxes[name], pets_gt, None if is_ref else pets_boxes[reference_name])
        pets["ms_median"] = round(statistics.median(pets_ms[name]), 2)
        pets["ms_p90"] = round(float(np.percentile(pets_ms[name], 90)), 2)
        if base:
            pets["time_vs_int8"] = round(pets["ms_median"] / base, 3)
        mot_result = score(mot_boxes[name], [m[1] for m in mot],
                           None if is_ref else mot_boxes[reference_name])
        report["results"][name] = {"pets09": pets, "mot17_mini": mot_result}
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
