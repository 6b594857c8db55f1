"""PETS09-S2L1 through the whole pipeline, scored with trackeval against its gt.

Usage (from the repository root):
    python3 -m benchmarks.pets09_pipeline [--config CONFIG] [--out DIR] [--max-frames N]
        [--set reid.precision=int8,detector.precision=int8,...]  (speed.py's lever syntax)

Prints one JSON object: HOTA, DetA, AssA, IDF1, MOTA, IDSW, FP, FN and the run's
throughput and per-stage milliseconds (docs/PIPELINE.md quotes it).
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
from pipeline.runner import RunOptions, run

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]

GT = REPO / "samples" / "pets09_s2l1" / "gt" / "gt.txt"
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
    result.update(camera_frames_per_s=summary["camera_frames_per_s"],
                  stage_ms_per_camera_frame=summary["stage_ms_per_camera_frame"],
                  tracklets=summary["tracklets"], identities=summary["identities"],
                  reid=summary["reid"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pets09_s2l1.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_pets09")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--set", default="", metavar="KEY=VALUE[,KEY=VALUE]",
                        help="change settings of the config (detector.KEY, tracker.KEY, "
                        "reid.KEY, run.KEY)")
    args = parser.parse_args()
    config: Path | RunConfig = args.config
    if args.set:
        from benchmarks.speed import apply_overrides, parse_lever

        config = apply_overrides(load_config(args.config), parse_lever(f"set={args.set}")[1])
    print(json.dumps(evaluate_pets09(config, args.out, max_frames=args.max_frames),
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
