"""Detection score distributions the tracker meets: where its thresholds sit in each.

For each source of detections, the quartiles of the scores and the share of boxes at or
above the tracker's thresholds (``low_thresh`` 0.1, ``high_thresh`` 0.4,
``new_track_thresh`` 0.5):

* ``pets09 yolo``: the shipped detector as ``configs/pets09_s2l1.yaml`` runs it (conf 0.1)
  on every ``--step``-th frame of PETS09-S2L1;
* ``sample camN yolo``: the same detector (``configs/sample.yaml``) on every frame of each
  of the sample's four cameras (drone views, people small and distant in some);
* ``mot17 noise level N``: the MOT17 noise study's detections at each level (seed 0, all
  seven sequences; ``benchmarks.lib.noise``), and with each ``SCORE_TRANSFORMS`` entry;
* ``pets09 acf / 100``: PETS09's public ACF detections as ``benchmarks.public_detections``
  reads them (scores / 100, clipped to [0, 1]).

``pipeline.tracking.scores.REFERENCE`` (the tracker's scale at the window quartiles that
``adaptive_scores`` maps onto) is the mean of the PETS09 YOLO row's and the level-2 row's.

    python3 -m benchmarks.tracker_scores --json runs/tracker_scores.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from benchmarks.lib.noise import SCORE_TRANSFORMS, make_detections, read_seqinfo, transform_scores
from benchmarks.noise_study import LEVELS, _seq_number, sequence_dirs
from benchmarks.public_detections import PETS, public_detections
from pipeline.evaluation.mot import read_mot_txt
from pipeline.tracking.scores import QUANTILES

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = {"low": 0.1, "high": 0.4, "new": 0.5}


def describe(scores: np.ndarray) -> dict[str, float]:
    """Count, quartiles and the share at or above each threshold."""
    q = np.quantile(scores, QUANTILES)
    return {"boxes": int(len(scores)), "q_lo": round(float(q[0]), 3),
            "median": round(float(np.median(scores)), 3), "q_hi": round(float(q[1]), 3),
            **{f"p{p}": round(float(np.quantile(scores, p / 100)), 3) for p in (90, 95, 99)},
            **{f">={k}": round(float(np.mean(scores >= v)), 3) for k, v in THRESHOLDS.items()}}


def yolo_scores(config_name: str, step: int) -> dict[str, np.ndarray]:
    """A shipped config's detector on every ``step``-th frame of each of its cameras."""
    import cv2

    from pipeline.config import load_config
    from pipeline.detection import YoloDetector

    config = load_config(REPO / "configs" / config_name)
    params = {k: v for k, v in config.detector.params.items() if k != "streams"}
    detector = YoloDetector(**params)
    out = {}
    for camera in config.cameras:
        capture = cv2.VideoCapture(str(camera.source))
        scores, n = [], 0
        while capture.grab():
            if n % step == 0:
                scores.append(detector.detect([capture.retrieve()[1]])[0].score)
            n += 1
        capture.release()
        out[camera.id] = np.concatenate(scores)
    return out


def noise_scores(level: str, transform: str) -> np.ndarray:
    """The noise study's detections of every MOT17 sequence at ``level``, seed 0."""
    out = []
    for seq in sequence_dirs(None):
        info = read_seqinfo(seq)
        dets = make_detections(read_mot_txt(seq / "gt" / "gt.txt"), LEVELS[level],
                               seed=_seq_number(seq), num_frames=info.num_frames,
                               image_size_wh=(info.width, info.height))
        out += [transform_scores(d, transform).score for d in dets.per_frame()]
    return np.concatenate(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=5, help="PETS09 frames: every N-th")
    parser.add_argument("--no-yolo", action="store_true", help="skip the detector run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = {}
    if not args.no_yolo:
        rows["pets09 yolo"] = describe(yolo_scores("pets09_s2l1.yaml", args.step)["pets09"])
        for cam, scores in yolo_scores("sample.yaml", 1).items():
            rows[f"sample {cam} yolo"] = describe(scores)
    for level in LEVELS:
        rows[f"mot17 noise {level}"] = describe(noise_scores(level, "none"))
    for transform in SCORE_TRANSFORMS:
        if transform != "none":
            rows[f"mot17 noise 2 medium, {transform}"] = describe(
                noise_scores("2 medium", transform))
    gt_frames = int(read_mot_txt(PETS / "gt" / "gt.txt")[:, 0].max())
    acf = public_detections(PETS / "det" / "det.txt", gt_frames, 100.0)
    rows["pets09 acf / 100"] = describe(np.concatenate([d.score for d in acf]))
    keys = list(next(iter(rows.values())))
    print("| detections | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(str(row[k]) for k in keys) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"quantiles": QUANTILES, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
