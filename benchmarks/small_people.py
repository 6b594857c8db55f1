"""Small people in HD cameras: recall/precision by person height and ms/frame per option.

Runs the shipped detector (YOLOv8n recovered, OpenVINO, 384x640, conf 0.1) through the
per-camera view options of ``pipeline.detection.views`` on

* the real 1920x1080 MOT17 frames with gt (MOT17-mini: MOT17-02 frames 1-4, MOT17-04
  frames 1-8; positives = gt rows with consider=1 and class 1 (pedestrian); detections
  matching a class 2/7/8/12 row (person on vehicle, static person, distractor,
  reflection) are ignored, as in MOTChallenge);
* PETS09-S2L1 (768x576), every ``--step``-th frame, all gt rows positive;

and reports, per option and data set, recall per gt-height bucket and precision per
detection-height bucket (< 50, 50-100, 100-150, 150-250, >= 250 px; IoU 0.5, one-to-one),
at score >= 0.5 (the tracker's new-track threshold) and with a per-height score
threshold (option d), plus the median ms of one frame's detection (letterbox, network
calls, NMS, tile merge). Options take turns frame by frame so they share the background
load; compare ratios within one run. Prints one JSON document.

    flock /tmp/cpu.lock nice -n 5 python3 -m benchmarks.small_people --step 10 --threads 2 \
        > small_people.json
    python3 -m benchmarks.small_people --markdown small_people.json   # the doc's tables
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.detection import YoloDetector
from pipeline.detection.multiview import detect_with_plan
from pipeline.detection.views import ViewOptions, plan_view
from pipeline.geometry import iou_matrix, linear_assignment, tlwh_to_xyxy

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PETS = DATA / "video" / "pets09_s2l1"
MOT = DATA / "mot" / "MOT17-mini" / "train"
WEIGHTS = ROOT / "weights" / "yolov8n_recovered.pt"

BUCKETS = (0, 50, 100, 150, 250, float("inf"))
BUCKET_NAMES = ("<50", "50-100", "100-150", "150-250", ">=250")
IGNORE_CLASSES = (2, 7, 8, 12)
BASE_IMGSZ = (384, 640)
# The walkable plaza of MOT17-02 below the shop fronts (drawn on frame 1; every gt box of
# the full 600-frame sequence has its top at y >= 311). MOT17-04 (a top-down street) and
# PETS09 have people everywhere in view: no ROI.
ROIS = {"MOT17-02": ([[0, 300], [1920, 300], [1920, 1080], [0, 1080]],)}
OPTIONS = {  # name -> ViewOptions keyword arguments ("roi" = the sequence's ROI)
    "plain 384x640": {"imgsz": None},
    "(a) auto imgsz, floor 0.5": {"imgsz": "auto", "min_scale": 0.5},
    "(a) auto imgsz, floor 0.65 (default)": {"imgsz": "auto", "min_scale": 0.65},
    "(b) tiles, floor 0.5": {"imgsz": None, "tiles": "auto", "min_scale": 0.5},
    "(b) tiles, floor 0.65": {"imgsz": None, "tiles": "auto", "min_scale": 0.65},
    "(c) roi": {"imgsz": None, "roi": True},
    "(c) roi + auto imgsz 0.5": {"roi": True, "imgsz": "auto", "min_scale": 0.5},
    "(c) roi + auto imgsz 0.65": {"roi": True, "imgsz": "auto", "min_scale": 0.65},
    "(c) roi + tiles 0.5": {"imgsz": None, "roi": True, "tiles": "auto", "min_scale": 0.5},
}
SCORE_POLICIES = {  # name -> min score for detections in each height bucket
    "score>=0.5": (0.5, 0.5, 0.5, 0.5, 0.5),
    "(d) by height 0.3/0.4/0.5": (0.3, 0.4, 0.5, 0.5, 0.5),
}


def bucket_of(heights: np.ndarray) -> np.ndarray:
    """Bucket index (0-4) of each height in pixels."""
    return np.digitize(heights, BUCKETS[1:-1], right=False)


def mot_sequences() -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per sequence: (image, positive gt xyxy, ignore xyxy) for every frame with a file."""
    out = {}
    for seq in ("MOT17-02", "MOT17-04"):
        folder = MOT / f"{seq}-FRCNN"
        gt = np.loadtxt(folder / "gt" / "gt.txt", delimiter=",", ndmin=2)
        frames = []
        for path in sorted((folder / "img1").glob("*.jpg")):
            rows = gt[gt[:, 0] == int(path.stem)]
            pos = rows[(rows[:, 6] == 1) & (rows[:, 7] == 1)]
            ign = rows[np.isin(rows[:, 7], IGNORE_CLASSES)]
            frames.append((cv2.imread(str(path)), tlwh_to_xyxy(pos[:, 2:6]),
                           tlwh_to_xyxy(ign[:, 2:6])))
        out[seq] = frames
    return out


def pets_frames(step: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every ``step``-th PETS09 frame with its gt boxes (all positive)."""
    gt = np.loadtxt(PETS / "gt" / "gt.txt", delimiter=",", ndmin=2)
    capture = cv2.VideoCapture(str(PETS / "vtest.avi"))
    frames, n = [], 0
    while capture.grab():
        n += 1
        if (n - 1) % step == 0:
            image = capture.retrieve()[1]
            rows = gt[gt[:, 0] == n]
            frames.append((image, tlwh_to_xyxy(rows[:, 2:6]), np.zeros((0, 4), np.float32)))
    capture.release()
    return frames


class Counts:
    """True/false positives and gt counts per height bucket."""

    def __init__(self) -> None:
        self.gt = np.zeros(5, int)
        self.hit = np.zeros(5, int)
        self.det = np.zeros(5, int)
        self.tp = np.zeros(5, int)

    def add(self, xyxy: np.ndarray, score: np.ndarray, gt: np.ndarray, ignore: np.ndarray,
            min_score: tuple[float, ...]) -> None:
        det_bucket = bucket_of(xyxy[:, 3] - xyxy[:, 1])
        keep = score >= np.asarray(min_score)[det_bucket]
        xyxy, det_bucket = xyxy[keep], det_bucket[keep]
        gt_bucket = bucket_of(gt[:, 3] - gt[:, 1])
        matched_det = np.zeros(len(xyxy), bool)
        matched_gt = np.zeros(len(gt), bool)
        if len(xyxy) and len(gt):
            iou = iou_matrix(gt, xyxy)
            pairs, _, _ = linear_assignment(1.0 - iou, 0.5)
            for g, d in pairs:
                matched_gt[g] = matched_det[d] = True
        ignored = np.zeros(len(xyxy), bool)
        if len(ignore) and len(xyxy):
            ignored = (iou_matrix(xyxy, ignore) >= 0.5).any(1) & ~matched_det
        np.add.at(self.gt, gt_bucket, 1)
        np.add.at(self.hit, gt_bucket[matched_gt], 1)
        np.add.at(self.det, det_bucket[~ignored], 1)
        np.add.at(self.tp, det_bucket[matched_det], 1)

    def table(self) -> dict:
        def ratio(a: np.ndarray, b: np.ndarray) -> list[float | None]:
            return [round(float(x) / y, 3) if y else None for x, y in zip(a, b, strict=True)]

        return {
            "gt": self.gt.tolist(), "recall": ratio(self.hit, self.gt),
            "precision": ratio(self.tp, self.det),
            "recall_all": round(self.hit.sum() / max(self.gt.sum(), 1), 3),
            "precision_all": round(self.tp.sum() / max(self.det.sum(), 1), 3),
        }


def _cell(value: float | None, n: int | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if n is None else f"{value:.2f} ({n})"


def markdown(report: dict) -> str:
    """Markdown tables (docs/DETECTION.md) from a report this script printed."""
    lines = []
    for data in ("MOT17 (02+04)", "MOT17-02", "MOT17-04", "PETS09"):
        for policy in SCORE_POLICIES:
            lines += [f"\n**{data}, {policy}** — recall by gt height (gt count) / precision "
                      "by detection height\n",
                      "| option | input | tiles | ms/frame | " + " | ".join(
                          f"R {b}" for b in BUCKET_NAMES) + " | R all | P all | "
                      + " | ".join(f"P {b}" for b in BUCKET_NAMES) + " |",
                      "|---" * (6 + 2 * len(BUCKET_NAMES)) + "|"]
            for name, per_data in report["options"].items():
                if data not in per_data:
                    continue
                row = per_data[data]
                table = row[policy]
                seq = row if "imgsz" in row else per_data["MOT17-04"]
                ms = ("/".join(str(per_data[s]["ms_median"]) for s in ("MOT17-02", "MOT17-04"))
                      if "imgsz" not in row else str(row["ms_median"]))
                lines.append(
                    f"| {name} | {seq['imgsz'][0]}x{seq['imgsz'][1]} | {seq['tiles']} | {ms} | "
                    + " | ".join(_cell(r, n) for r, n in zip(table["recall"], table["gt"],
                                                             strict=True))
                    + f" | {table['recall_all']:.3f} | {table['precision_all']:.3f} | "
                    + " | ".join(_cell(p) for p in table["precision"]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", type=Path, default=None,
                        help="print the tables of a saved JSON report instead of running")
    parser.add_argument("--step", type=int, default=10, help="PETS09 frame step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed passes over the MOT17 frames (medians over all)")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    os.environ["YOLO_OFFLINE"] = "1"
    cv2.setNumThreads(1)
    data = {**mot_sequences(), "PETS09": pets_frames(args.step)}
    detectors: dict[tuple[int, int], YoloDetector] = {}

    def detector(imgsz: tuple[int, int]) -> YoloDetector:
        if imgsz not in detectors:
            detectors[imgsz] = YoloDetector(weights=WEIGHTS, backend="openvino", imgsz=imgsz,
                                            conf=0.1, threads=args.threads)
        return detectors[imgsz]

    report: dict = {"machine": f"{platform.machine()} {os.cpu_count()} cpus (shared)",
                    "buckets_px": BUCKET_NAMES, "threads": args.threads, "options": {}}
    report["options"] = {name: {} for name in OPTIONS}
    mot_all: dict[tuple[str, str], list[Counts]] = {}
    for seq, frames in data.items():
        views = {}
        for name, raw in OPTIONS.items():
            kwargs = dict(raw)
            if kwargs.pop("roi", False):
                if seq not in ROIS:
                    continue
                kwargs["roi"] = ROIS[seq]
            image = frames[0][0]
            views[name] = plan_view(ViewOptions(**kwargs), (image.shape[1], image.shape[0]),
                                    BASE_IMGSZ)
            detector(views[name].imgsz)
            detect_with_plan(detector(views[name].imgsz), image, views[name])  # warm-up
        counts = {(n, p): Counts() for n in views for p in SCORE_POLICIES}
        times: dict[str, list[float]] = {n: [] for n in views}
        n_dets: dict[str, list[int]] = {n: [] for n in views}
        repeats = args.repeats if seq != "PETS09" else 1
        for rep in range(repeats):
            for image, gt, ignore in frames:
                for name, plan in views.items():
                    start = time.perf_counter()
                    dets = detect_with_plan(detector(plan.imgsz), image, plan)
                    times[name].append((time.perf_counter() - start) * 1000)
                    if rep:
                        continue
                    n_dets[name].append(int((dets.score >= 0.5).sum()))
                    for policy, thresholds in SCORE_POLICIES.items():
                        counts[name, policy].add(dets.xyxy, dets.score, gt, ignore, thresholds)
        if seq.startswith("MOT17"):
            for key, value in counts.items():
                mot_all.setdefault(key, []).append(value)
        for name, plan in views.items():
            report["options"][name][seq] = {
                "imgsz": list(plan.imgsz), "tiles": len(plan.tiles_xyxy),
                "region": plan.region_xyxy.tolist(), "frames": len(frames),
                "ms_median": round(statistics.median(times[name]), 1),
                "dets_per_frame": round(statistics.mean(n_dets[name]), 1),
                **{policy: counts[name, policy].table() for policy in SCORE_POLICIES},
            }
            print(f"{seq:9s} {name:28s} {report['options'][name][seq]['ms_median']:7.1f} ms "
                  f"R {counts[name, 'score>=0.5'].table()['recall']}", file=sys.stderr)
    for (name, policy), parts in mot_all.items():
        if len(parts) == 2:  # options measured on both MOT17 sequences
            total = Counts()
            for part in parts:
                for attr in ("gt", "hit", "det", "tp"):
                    setattr(total, attr, getattr(total, attr) + getattr(part, attr))
            report["options"][name].setdefault("MOT17 (02+04)", {})[policy] = total.table()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
