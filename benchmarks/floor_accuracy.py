"""How far floor positions land from where WILDTRACK's annotators put each person.

Usage (from the repository root, ``../shared`` beside it; ~10 s):
    python3 -m benchmarks.floor_accuracy [--points 8] [--seed 0] [--json runs/floor_accuracy.json]
        [--results]   (also docs/results/floor_accuracy.json, quoted by the docs)

WILDTRACK (``shared/data/mtmc/wildtrack``) annotates 400 frames of 7 overlapping
1920x1080 views: per person a box in every view that sees them and one ground position
(a 2.5 cm grid cell). Every annotated box's foot point (bottom centre) goes through
``pipeline.calibration`` exactly as a run does it, and the distance to the person's
annotated position is the error. Two calibrations per camera:

* ``files``: the dataset's OpenCV XML files (``intrinsic_zero`` + ``extrinsic``, tvec in
  centimetres), as ``cameras[].calibration: {intrinsics, extrinsics, unit: cm}``;
* ``N points``: a homography fitted to N annotated (foot pixel, ground position) pairs
  picked at random (seeded) from that camera's boxes, as an operator would click N floor
  points with known coordinates (``calibration: {points: ...}``); scored on the other
  boxes.

Boxes whose bottom edge touches the image border have no foot point (counted, left out).
Prints a markdown table (metres) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.lib import wildtrack as wt
from pipeline.calibration import GroundCalibration

REPO = Path(__file__).resolve().parents[1]
WILDTRACK = REPO.parent / "shared" / "data" / "mtmc" / "wildtrack"


def _stats(error: np.ndarray) -> dict[str, float]:
    return {"boxes": int(error.size), "median_m": float(np.median(error)),
            "p90_m": float(np.percentile(error, 90)), "p95_m": float(np.percentile(error, 95)),
            "within_0.3m": float(np.mean(error <= 0.3)),
            "within_0.5m": float(np.mean(error <= 0.5))}


def measure(points: int, seed: int) -> dict:
    """Per camera and overall, the error of both calibrations (see the module docstring)."""
    boxes = wt.load_annotations(WILDTRACK / "annotations_positions")
    truth = wt.position_to_ground(boxes.position_id)
    root = WILDTRACK / "calibrations"
    rng = np.random.default_rng(seed)
    rows: dict[str, dict] = {}
    every: dict[str, list[np.ndarray]] = {"files": [], "points": []}
    for view, (cam, name) in enumerate(zip(wt.CAMERAS, wt.CALIBRATION_NAMES, strict=True)):
        sel = boxes.view == view
        xyxy, gt = boxes.xyxy[sel], truth[sel]
        files = GroundCalibration.from_opencv(cam, root / "intrinsic_zero" / f"intr_{name}.xml",
                                              root / "extrinsic" / f"extr_{name}.xml",
                                              unit="cm")
        files.check_image(wt.IMAGE_WH)
        floor = files.foot_points(xyxy, wt.IMAGE_WH)
        known = np.flatnonzero(np.isfinite(floor).all(axis=1))
        error_files = np.linalg.norm(floor[known] - gt[known], axis=1)
        picked = rng.choice(known, size=points, replace=False)
        foot = np.column_stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]])
        clicked = GroundCalibration.from_points(cam, np.column_stack([foot[picked], gt[picked]]))
        rest = np.setdiff1d(known, picked)
        error_points = np.linalg.norm(clicked.foot_points(xyxy[rest], wt.IMAGE_WH) - gt[rest],
                                      axis=1)
        rows[cam] = {"view": name, "annotated": int(sel.sum()),
                     "no_foot_point": int(sel.sum() - known.size),
                     "files": _stats(error_files), "points": _stats(error_points)}
        every["files"].append(error_files)
        every["points"].append(error_points)
    rows["all"] = {"view": "all", "annotated": int(len(boxes)),
                   "no_foot_point": sum(r["no_foot_point"] for r in rows.values()),
                   **{k: _stats(np.concatenate(v)) for k, v in every.items()}}
    return rows


def markdown(rows: dict, points: int) -> str:
    lines = ["| camera | boxes | no foot point | files: median / p90 / p95 | files: <= 0.3 m | "
             f"{points} points: median / p90 / p95 | {points} points: <= 0.3 m |",
             "|---|---|---|---|---|---|---|"]
    for cam, r in rows.items():
        f, p = r["files"], r["points"]
        label = cam if cam == "all" else f"{cam} ({r['view']})"
        lines.append(f"| {label} | {r['annotated']} | {r['no_foot_point']} | "
                     f"{f['median_m']:.3f} / {f['p90_m']:.3f} / {f['p95_m']:.3f} | "
                     f"{100 * f['within_0.3m']:.1f}% | "
                     f"{p['median_m']:.3f} / {p['p90_m']:.3f} / {p['p95_m']:.3f} | "
                     f"{100 * p['within_0.3m']:.1f}% |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=8,
                        help="annotated pairs the 'points' calibration is fitted to (>= 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "floor_accuracy.json")
    parser.add_argument("--results", action="store_true",
                        help="also write docs/results/floor_accuracy.json (what the docs quote)")
    args = parser.parse_args()
    if args.points < 4:
        parser.error("--points must be >= 4")
    start = time.perf_counter()
    rows = measure(args.points, args.seed)
    print(markdown(rows, args.points))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)},
                                     "rows": rows, "wall_s": time.perf_counter() - start,
                                     "machine": platform.processor() or platform.machine()},
                                    indent=1))
    print(f"wrote {args.json}", file=sys.stderr)
    if args.results:
        from benchmarks.lib.results import write_results

        path = write_results("floor_accuracy", rows,
                             settings={"points": args.points, "seed": args.seed})
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
