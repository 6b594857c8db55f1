"""Re-id only where it pays: accuracy and cost of the embedding schedule.

Runs PETS09-S2L1 (scored against its gt with trackeval) and optionally the 4-camera
sample (no gt: throughput, identities and the share of detections embedded) with
``reid.refresh_s`` = each value of ``--refresh`` (0 = every eligible detection,
every frame), plus the motion-only config as the floor. The runs take turns in one
process, so their timings share the same machine state; report the ratios.

    python3 -m benchmarks.reid_schedule --refresh 0 0.2 0.4 0.8 [--backend openvino] [--sample]
        [--min-score 0.4 0.6] [--no-motion]

Prints a markdown table and writes JSON to ``--json`` (default runs/reid_schedule.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from benchmarks.pets09_pipeline import evaluate_pets09
from pipeline.config import load_config
from pipeline.runner import RunOptions, run

REPO = Path(__file__).resolve().parents[1]


def _with_reid(config, **changes):
    return dataclasses.replace(config, reid=dataclasses.replace(config.reid, **changes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refresh", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.8])
    parser.add_argument("--backend", default=None, help="override reid.backend")
    parser.add_argument("--min-score", type=float, nargs="+", default=[None],
                        help="reid.min_score values to compare (default: the configs' own)")
    parser.add_argument("--sample", action="store_true",
                        help="also run the 4-camera sample (configs/sample.yaml)")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--no-motion", action="store_true", help="skip the motion-only row")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "reid_schedule")
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "reid_schedule.json")
    args = parser.parse_args()

    base = load_config(REPO / "configs" / "pets09_s2l1.yaml")
    overrides = {"backend": args.backend} if args.backend else {}
    base = _with_reid(base, **overrides)
    rows = []
    if not args.no_motion:
        motion = evaluate_pets09(REPO / "configs" / "pets09_s2l1_motion_only.yaml",
                                 args.out / "pets_motion", max_frames=args.max_frames,
                                 progress=False)
        rows.append({"data": "PETS09", "refresh_s": "motion only", **motion})
    settings = [(n, m) for m in args.min_score for n in args.refresh]
    for n, m in settings:
        extra = {"min_score": m} if m is not None else {}
        tag = f"r{n}" + (f"_s{m}" if m is not None else "")
        result = evaluate_pets09(_with_reid(base, refresh_s=n, **extra),
                                 args.out / f"pets_{tag}", max_frames=args.max_frames,
                                 progress=False)
        rows.append({"data": "PETS09", "refresh_s": n, "min_score": m, **result})
    if args.sample:
        sample = _with_reid(load_config(REPO / "configs" / "sample.yaml"), **overrides)
        for n, m in settings:
            extra = {"min_score": m} if m is not None else {}
            tag = f"r{n}" + (f"_s{m}" if m is not None else "")
            s = run(_with_reid(sample, refresh_s=n, **extra), args.out / f"sample_{tag}",
                    RunOptions(max_frames=args.max_frames, progress=False))
            rows.append({"data": "sample", "refresh_s": n, "min_score": m,
                         "camera_frames_per_s": s["camera_frames_per_s"],
                         "stage_ms_per_camera_frame": s["stage_ms_per_camera_frame"],
                         "tracklets": s["tracklets"], "identities": s["identities"],
                         "identities_multi_camera": s["identities_multi_camera"],
                         "reid": s["reid"]})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print("| data | refresh_s | min_score | HOTA | IDF1 | MOTA | IDSW | crops embedded | "
          "embedded share | embed ms/cam-frame | cam-frames/s | identities (multi-cam) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        stage = r["stage_ms_per_camera_frame"]
        share = r["reid"]["embedded_share"] if r.get("reid") else 0.0
        crops = r["reid"]["embedded_detections"] if r.get("reid") else 0
        min_score = r.get("min_score") if r.get("min_score") is not None else "config"
        ids = r.get("identities")
        if "identities_multi_camera" in r:
            ids = f"{ids} ({r['identities_multi_camera']})"
        hota, idf1, mota = (f"{100 * r[k]:.1f}" if k in r else "-"
                            for k in ("HOTA", "IDF1", "MOTA"))
        print(f"| {r['data']} | {r['refresh_s']} | {min_score} | {hota} | {idf1} | "
              f"{mota} | {r.get('IDSW', '-')} | {crops} | {share:.2f} | "
              f"{stage.get('embed', 0.0):.1f} | {r['camera_frames_per_s']:.1f} | {ids} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
