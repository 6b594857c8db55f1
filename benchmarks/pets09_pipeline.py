"""PETS09-S2L1 through the whole pipeline, scored with trackeval against its gt.

Usage (from the repository root):
    python3 -m benchmarks.pets09_pipeline [--config CONFIG] [--out DIR] [--max-frames N]
        [--set reid.precision=int8,detector.precision=int8,...]  (speed.py's lever syntax)
        [--results VARIANT]  (docs/results/pets09_pipeline.json; benchmarks/lib/results.py)

Prints one JSON object: HOTA, DetA, AssA, IDF1, MOTA, IDSW, FP, FN of the tracker's
local ids (``mot/pets09.txt``) against the MOTChallenge gt; the same under ``people`` for
the global ids a user reads in ``trajectories.csv`` against the gt with each person's
ids joined (``samples/pets09_s2l1/gt/people.json``: the gt gives a person a new id at
each re-entry, 19 ids for 10 people), which scores association joining a person's
tracklets across exits and returns (re-id at work); and the run's throughput and
per-stage milliseconds (docs/PIPELINE.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from pipeline.config import RunConfig, load_config
from pipeline.evaluation.mot import evaluate_mot
from pipeline.export.csv_writer import read_trajectories
from pipeline.runner import RunOptions, run

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]

GT = REPO / "samples" / "pets09_s2l1" / "gt" / "gt.txt"
PEOPLE = GT.with_name("people.json")
KEYS = ("HOTA", "DetA", "AssA", "IDF1", "MOTA", "IDSW", "FP", "FN")


def evaluate_pets09(config: Path | RunConfig, out: Path, *, max_frames: int | None = None,
                    progress: bool = True) -> dict:
    """Run ``config`` (a one-camera PETS09 config, file or loaded) and score its MOT file
    against gt."""
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    summary = run(cfg, out, RunOptions(max_frames=max_frames, progress=progress))
    camera = cfg.cameras[0].id
    gt = np.loadtxt(GT, delimiter=",", ndmin=2)
    if max_frames is not None:  # score only the frames that were run
        gt = gt[gt[:, 0] <= max_frames]
    metrics = evaluate_mot(gt, out / "mot" / f"{camera}.txt", num_frames=max_frames)
    result = {k: round(float(metrics[k]), 4) for k in KEYS}
    people = evaluate_mot(people_gt(gt), global_id_rows(out / "trajectories.csv"),
                          num_frames=max_frames)
    result["people"] = {k: round(float(people[k]), 4) for k in KEYS}
    result.update(camera_frames_per_s=summary["camera_frames_per_s"],
                  stage_ms_per_camera_frame=summary["stage_ms_per_camera_frame"],
                  tracklets=summary["tracklets"], identities=summary["identities"],
                  reid=summary["reid"])
    return result


def people_gt(gt: np.ndarray, groups: Path = PEOPLE) -> np.ndarray:
    """``gt`` with every id of one person (``people.json``'s groups) replaced by the
    group's first id."""
    same = json.loads(groups.read_text(encoding="utf-8"))["same_person"]
    relabel = {int(i): int(group[0]) for group in same for i in group}
    out = gt.copy()
    out[:, 1] = [relabel.get(int(i), int(i)) for i in gt[:, 1]]
    return out


def global_id_rows(path: Path) -> np.ndarray:
    """MOT rows ``frame (1-based), global_id, left, top, width, height`` of one camera's
    ``trajectories.csv``; rows without an identity (-1) are left out."""
    t = read_trajectories(path)
    keep = t.global_id >= 0
    xyxy = t.xyxy[keep]
    return np.column_stack([t.frame[keep] + 1, t.global_id[keep], xyxy[:, :2],
                            xyxy[:, 2:] - xyxy[:, :2]]).astype(np.float64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pets09_s2l1.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_pets09")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--set", default="", metavar="KEY=VALUE[,KEY=VALUE]",
                        help="change settings of the config (detector.KEY, tracker.KEY, "
                        "reid.KEY, run.KEY)")
    parser.add_argument("--results", metavar="VARIANT", default=None,
                        help="also write the figures as this variant of "
                        "docs/results/pets09_pipeline.json (what the docs quote)")
    args = parser.parse_args()
    config: Path | RunConfig = args.config
    if args.set:
        from benchmarks.lib.levers import apply_overrides, parse_lever

        config = apply_overrides(load_config(args.config), parse_lever(f"set={args.set}")[1])
    result = evaluate_pets09(config, args.out, max_frames=args.max_frames)
    print(json.dumps(result, indent=2))
    if args.results:
        from benchmarks.lib.results import write_results

        figures = {"track": {k: result[k] for k in KEYS},
                   "people": result["people"],
                   "camera_frames_per_s": result["camera_frames_per_s"]}
        path = write_results("pets09_pipeline", figures, variant=args.results,
                             settings={"config": str(Path(args.config).resolve()
                                                     .relative_to(REPO)),
                                       "set": args.set, "max_frames": args.max_frames})
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
