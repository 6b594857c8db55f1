"""INT8 detector candidates against the float one: accuracy, score calibration, speed.

Each candidate is a folder holding a copy of ``weights/yolov8n_recovered.pt`` and an INT8
IR made from it (``tools/quantize_openvino.py detector --out FOLDER``). Every candidate
and the f32 OpenVINO model run at 384x640 (``conf`` 0.1, the pipeline's) on

* PETS09-S2L1, every ``--step``-th frame: recall / precision at IoU 0.5 against gt for
  boxes with score >= 0.25 (``benchmarks.detector_backends``' figure), 0.4 and 0.5
  (the tracker's thresholds);
* validation frames that are not PETS09 (the P-DESTRE sample cameras, frames
  ``index % 5 == 2`` — not the calibration frames — and the 12 MOT17-mini frames):
  F1 at IoU 0.5 of the candidate's score >= 0.4 boxes against the f32 model's;
* score calibration: candidate boxes matched one-to-one to f32 boxes (IoU >= 0.5, f32
  score >= 0.1) on all those frames: mean and mean absolute score difference (INT8 - f32),
  and the share of matched pairs on different sides of 0.4 or 0.5;
* with ``--timed``: median ms of one ``detect`` call, models taking turns frame by frame,
  and its ratio to f32 (wrap in ``flock /tmp/cpu.lock nice -n 5`` on a shared machine).

    python3 -m benchmarks.int8_detector /tmp/int8c/base /tmp/int8c/clsf --timed
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import cv2
import numpy as np

from benchmarks.detector_backends import PETS, RECOVERED, mot_frames, pets_frames, run_round_robin
from pipeline.detection import YoloDetector
from pipeline.geometry import iou_matrix, linear_assignment, tlwh_to_xyxy

ROOT = Path(__file__).resolve().parents[1]
VALIDATION = ROOT / "samples" / "pdestre_session3"
IMGSZ = (384, 640)


def validation_frames(step: int = 5, offset: int = 2) -> list[np.ndarray]:
    """P-DESTRE frames that the calibration (every 5th from 0) did not use."""
    frames = []
    for video in sorted(VALIDATION.glob("*.webm")):
        capture, index = cv2.VideoCapture(str(video)), 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == offset:
                frames.append(frame)
            index += 1
        capture.release()
    return frames


def matches(a: np.ndarray, b: np.ndarray, min_iou: float = 0.5) -> list[tuple[int, int]]:
    pairs, _, _ = linear_assignment(1.0 - iou_matrix(a, b), max_cost=1.0 - min_iou)
    return [(int(i), int(j)) for i, j in pairs]


def detect_all(detectors: dict[str, YoloDetector], images: list[np.ndarray], timed: bool):
    """(boxes, scores) and ms per call of every detector on every image, taking turns."""
    return run_round_robin(detectors, images, timed, scores=True)


def gt_scores(dets: list, gts: list[np.ndarray], threshold: float) -> tuple[float, float]:
    hit = n_det = 0
    for (boxes, scores), gt in zip(dets, gts, strict=True):
        keep = boxes[scores >= threshold]
        hit += len(matches(keep, gt))
        n_det += len(keep)
    return hit / sum(len(g) for g in gts), hit / max(n_det, 1)


def agreement(dets: list, reference: list, threshold: float = 0.4) -> float:
    hit = n_a = n_b = 0
    for (a, sa), (b, sb) in zip(dets, reference, strict=True):
        a, b = a[sa >= threshold], b[sb >= threshold]
        hit += len(matches(a, b))
        n_a, n_b = n_a + len(a), n_b + len(b)
    return 2 * hit / max(n_a + n_b, 1)


def calibration(dets: list, reference: list) -> dict:
    diffs, flips = [], {0.4: 0, 0.5: 0}
    for (a, sa), (b, sb) in zip(dets, reference, strict=True):
        for i, j in matches(a, b):
            diffs.append(float(sa[i] - sb[j]))
            for t in flips:
                flips[t] += (sa[i] >= t) != (sb[j] >= t)
    d = np.array(diffs)
    return {"matched": len(d), "mean_diff": round(float(d.mean()), 4),
            "mean_abs_diff": round(float(np.abs(d).mean()), 4),
            "flip_0.4": round(flips[0.4] / len(d), 4), "flip_0.5": round(flips[0.5] / len(d), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", type=Path, nargs="+",
                        help="folders with a copy of the .pt and its INT8 IR")
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timed", action="store_true")
    args = parser.parse_args()
    detectors = {"f32": YoloDetector(weights=RECOVERED, backend="openvino", imgsz=IMGSZ,
                                     conf=0.1, threads=args.threads, precision="fp32")}
    for folder in args.candidates:
        weights = folder / RECOVERED.name
        detectors[folder.name] = YoloDetector(weights=weights, backend="openvino", imgsz=IMGSZ,
                                              conf=0.1, threads=args.threads, precision="int8")
        assert detectors[folder.name]._net.precision == "int8", folder
    frames = pets_frames(args.step)
    gt = np.loadtxt(PETS / "gt" / "gt.txt", delimiter=",")
    pets_gt = [tlwh_to_xyxy(gt[gt[:, 0] == n][:, 2:6]) for n in frames]
    pets, ms = detect_all(detectors, list(frames.values()), args.timed)
    others = validation_frames() + [m[0] for m in mot_frames()]
    val, _ = detect_all(detectors, others, False)
    report = {"pets_frames": len(frames), "validation_frames": len(others), "results": {}}
    base = statistics.median(ms["f32"]) if args.timed else None
    for name in detectors:
        row = {}
        for t in (0.25, 0.4, 0.5):
            r, p = gt_scores(pets[name], pets_gt, t)
            row[f"pets_R/P@{t}"] = [round(r, 4), round(p, 4)]
        if name != "f32":
            row["val_f1_vs_f32"] = round(agreement(val[name], val["f32"]), 4)
            row["pets_f1_vs_f32"] = round(agreement(pets[name], pets["f32"]), 4)
            row["score_vs_f32"] = calibration(pets[name] + val[name], pets["f32"] + val["f32"])
        if base:
            row["ms_median"] = round(statistics.median(ms[name]), 2)
            row["time_vs_f32"] = round(row["ms_median"] / base, 3)
        report["results"][name] = row
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
