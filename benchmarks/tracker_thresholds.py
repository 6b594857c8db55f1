"""Tracker score thresholds on PETS09-S2L1 with the real detector: a grid, side by side.

Our ByteTracker splits detections by score: ``high_thresh`` (first, appearance-fused
association), ``low_thresh`` (second, IoU-only stage) and ``new_track_thresh`` (births).
This runs the shipped PETS09 configs (with HA-CNN and motion only) for each
``HIGH/NEW`` pair and scores them against the gt with trackeval. With re-id on,
``reid.min_score`` follows ``high_thresh`` (embed what the appearance stage can use)
unless ``--min-score`` fixes it (weaker detections then match on motion alone).

    python3 -m benchmarks.tracker_thresholds --pairs 0.6/0.7 0.5/0.6 0.4/0.5 0.25/0.25
        [--max-frames N] [--no-reid] [--json runs/tracker_thresholds.json]

Prints a markdown table; every figure goes to ``--json``. The runs take turns in one
process, so their timings share the machine state (compare within one run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from benchmarks.pets09_pipeline import evaluate_pets09
from pipeline.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def with_thresholds(config: RunConfig, high: float, new: float, *, reid: bool,
                    min_score: float | None = None) -> RunConfig:
    """``config`` with the tracker's high/new thresholds set and reid.min_score =
    ``min_score`` (None: = high)."""
    params = dict(config.tracker.params) | {"high_thresh": high, "new_track_thresh": new}
    tracker = dataclasses.replace(config.tracker, params=params)
    config = dataclasses.replace(config, tracker=tracker)
    if reid:
        score = high if min_score is None else min_score
        config = dataclasses.replace(config, reid=dataclasses.replace(config.reid,
                                                                      min_score=score))
    return config


def _pair(text: str) -> tuple[float, float]:
    high, sep, new = text.partition("/")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HIGH/NEW, e.g. 0.5/0.6, got {text!r}")
    return float(high), float(new)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=_pair, nargs="+",
                        default=[(0.6, 0.7), (0.5, 0.6), (0.4, 0.5), (0.25, 0.25)],
                        help="HIGH/NEW threshold pairs")
    parser.add_argument("--min-score", type=float, default=None,
                        help="fixed reid.min_score (default: follow each pair's HIGH)")
    parser.add_argument("--no-reid", action="store_true", help="motion-only rows only")
    parser.add_argument("--no-motion", action="store_true", help="re-id rows only")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "tracker_thresholds")
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "tracker_thresholds.json")
    args = parser.parse_args()

    modes = []
    if not args.no_reid:
        modes.append(("HA-CNN", REPO / "configs" / "pets09_s2l1.yaml", True))
    if not args.no_motion:
        modes.append(("motion only", REPO / "configs" / "pets09_s2l1_motion_only.yaml", False))
    rows = []
    for label, path, reid in modes:
        base = load_config(path)
        for high, new in args.pairs:
            tag = f"{'reid' if reid else 'motion'}_h{high}_n{new}"
            cfg = with_thresholds(base, high, new, reid=reid, min_score=args.min_score)
            result = evaluate_pets09(cfg,
                                     args.out / tag, max_frames=args.max_frames,
                                     progress=False)
            rows.append({"mode": label, "high_thresh": high, "new_track_thresh": new,
                         "min_score": cfg.reid.min_score if reid else None, **result})
            print(f"{tag}: HOTA {result['HOTA']:.4f} IDF1 {result['IDF1']:.4f}",
                  file=sys.stderr, flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print("| mode | high / new | HOTA | DetA | AssA | IDF1 | MOTA | IDSW | FP | FN | "
          "cam-frames/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pct = (f"{100 * r[k]:.1f}" for k in ("HOTA", "DetA", "AssA", "IDF1", "MOTA"))
        print(f"| {r['mode']} | {r['high_thresh']} / {r['new_track_thresh']} | "
              + " | ".join(pct)
              + f" | {int(r['IDSW'])} | {int(r['FP'])} | {int(r['FN'])} | "
              f"{r['camera_frames_per_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
