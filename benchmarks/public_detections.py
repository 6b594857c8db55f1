"""Trackers fed PETS09-S2L1's public MOT15 detections (det/det.txt), scored against its gt.

MOTChallenge 2015 compared trackers on the same public detections (ACF); this does that
for our tracker and the ultralytics trackers:

* ``ours motion-only`` / ``ours + appearance``: the whole pipeline (``pipeline.runner.run``)
  with ``configs/pets09_s2l1_motion_only.yaml`` / ``configs/pets09_s2l1.yaml``, its detector
  replaced by a replay of det.txt (a detector entry added to ``DETECTORS`` in this process
  only), so the re-id, its embedding schedule and the tracker are exactly the pipeline's;
* ``ul-bytetrack`` / ``ul-botsort``: ultralytics' trackers with their ``YOLO.track`` YAML
  defaults (no re-id), fed the same boxes and scores (``tracker_adapters.py``).

ACF scores are not probabilities (here -0.5 to 139): they are mapped to
``clip(score / --score-scale, 0, 1)`` (default 100, fixed before looking at results;
``--scales`` reports other choices side by side). Prints a markdown table; ``--json`` writes
it with every metric.

    nice -n 10 python3 -m benchmarks.public_detections --json runs/public_detections.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.tracker_adapters import run_ultralytics
from pipeline.config import RunConfig, load_config
from pipeline.evaluation.mot import evaluate_mot, read_mot_txt
from pipeline.types import Detections

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]

PETS = REPO.parent / "shared" / "data" / "video" / "pets09_s2l1"
KEYS = ("HOTA", "DetA", "AssA", "IDF1", "MOTA", "IDSW", "FP", "FN")


def public_detections(det_file: Path, num_frames: int, score_scale: float) -> list[Detections]:
    """det.txt rows (frame,-1,left,top,width,height,score,...) -> one Detections per frame."""
    rows = read_mot_txt(det_file)
    out = []
    for frame in range(1, num_frames + 1):
        r = rows[rows[:, 0] == frame]
        xyxy = np.column_stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]])
        out.append(Detections(xyxy=xyxy, score=np.clip(r[:, 6] / score_scale, 0.0, 1.0)))
    return out


class PublicDetector:
    """Replays det.txt as a pipeline detector: call n of ``detect`` returns frame n's boxes.

    The runner calls ``detect`` once per tick with the one camera's image, in frame order.
    """

    def __init__(self, *, frames: list[Detections], device: str = "cpu", **_: object) -> None:
        self.frames = frames
        self.calls = 0
        # The size key CameraDetector files the plain path under; nothing is resized.
        self.imgsz = (576, 768)

    def detect(self, images_bgr: list[np.ndarray]) -> list[Detections]:
        if len(images_bgr) != 1:
            raise ValueError("PublicDetector replays one camera")
        if self.calls >= len(self.frames):
            raise IndexError(f"det.txt has {len(self.frames)} frames; frame {self.calls + 1} "
                             "was asked for")
        self.calls += 1
        return [self.frames[self.calls - 1]]


def run_pipeline(config: RunConfig, frames: list[Detections], out: Path) -> tuple[Path, dict]:
    """The whole pipeline on ``config`` with det.txt replayed as its detector."""
    from pipeline.config import ComponentConfig
    from pipeline.detection import DETECTORS
    from pipeline.runner import RunOptions, run

    DETECTORS["public-det-replay"] = PublicDetector
    replay = replace(config, detector=ComponentConfig(name="public-det-replay",
                                                      params={"frames": frames}))
    summary = run(replay, out, RunOptions(max_frames=len(frames), progress=False,
                                          handle_signals=False))
    return out / "mot" / f"{config.cameras[0].id}.txt", summary


def evaluate(gt: np.ndarray, rows: np.ndarray, num_frames: int) -> dict[str, float]:
    metrics = evaluate_mot(gt, rows, num_frames=num_frames)
    return {k: round(float(metrics[k]), 4) for k in KEYS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pets09_s2l1.yaml",
                        help="config whose tracker and re-id are used")
    parser.add_argument("--motion-config", type=Path,
                        default=REPO / "configs" / "pets09_s2l1_motion_only.yaml")
    parser.add_argument("--score-scale", type=float, default=100.0)
    parser.add_argument("--scales", type=float, nargs="*", default=[],
                        help="extra score scales for the motion-only trackers (sensitivity)")
    parser.add_argument("--no-appearance", action="store_true", help="skip the re-id row")
    parser.add_argument("--set", default="", metavar="KEY=VALUE[,KEY=VALUE]",
                        help="change settings of both configs (tracker.KEY, reid.KEY), "
                        "e.g. tracker.output_box=filtered")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    num_frames = 795
    gt = read_mot_txt(PETS / "gt" / "gt.txt")
    config = load_config(args.config)
    motion_config = load_config(args.motion_config)
    if args.set:
        from benchmarks.lib.levers import apply_overrides, parse_lever

        overrides = parse_lever(f"set={args.set}")[1]
        config = apply_overrides(config, overrides)
        motion_config = apply_overrides(motion_config, overrides)
    for cfg in (config, motion_config):
        if len(cfg.cameras) != 1:
            raise SystemExit(f"{cfg.source_file}: need a one-camera PETS09 config")
    results = []

    with tempfile.TemporaryDirectory() as tmp:
        for scale in [args.score_scale, *args.scales]:
            frames = public_detections(PETS / "det" / "det.txt", num_frames, scale)
            pipelines = [("ours motion-only", motion_config)]
            if scale == args.score_scale and not args.no_appearance:
                pipelines.append(("ours + appearance", config))
            for name, cfg in pipelines:
                mot, summary = run_pipeline(cfg, frames, Path(tmp) / f"{name}-{scale:g}")
                results.append({"tracker": name, "score_scale": scale,
                                "stage_ms_per_frame": summary["stage_ms_per_camera_frame"],
                                **evaluate(gt, read_mot_txt(mot), num_frames)})
            for kind in ("bytetrack", "botsort"):
                start = time.perf_counter()
                rows = run_ultralytics(frames, kind)
                seconds = time.perf_counter() - start
                results.append({"tracker": f"ul-{kind}", "score_scale": scale,
                                "track_ms_per_frame": round(1000 * seconds / num_frames, 2),
                                **evaluate(gt, rows, num_frames)})

    print("| tracker | score scale | HOTA | DetA | AssA | IDF1 | MOTA | IDSW | FP | FN |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        pct = " | ".join(f"{100 * r[k]:.1f}" for k in ("HOTA", "DetA", "AssA", "IDF1", "MOTA"))
        print(f"| {r['tracker']} | {r['score_scale']:g} | {pct} | {r['IDSW']:.0f} | "
              f"{r['FP']:.0f} | {r['FN']:.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": str(args.config), "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
