"""How far online (bounded-lag) association falls behind offline on the same footage.

Runs ``mtmc run`` twice on one config (default: the shipped four-camera sample), once
with ``association.mode: offline`` and once ``online`` (other association keys
unchanged, plus ``--lag``/``--min-frames``). Detection and tracking are deterministic,
so both runs see the same tracklets and only the identities differ. There is no ground
truth for the sample, so offline is the reference. Prints JSON: identities of each,
tracklets whose online identity differs from offline's after the best one-to-one
matching of identities, pairwise agreement over tracklet pairs, revisions made.

    nice -n 10 python3 benchmarks/online_vs_offline.py --out runs/online_vs_offline
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


def _ids(path: Path) -> dict[tuple[str, int], int]:
    from pipeline.export import read_trajectories

    rows = read_trajectories(path)
    return {(str(c), int(t)): int(g)
            for c, t, g in zip(rows.camera, rows.track_id, rows.global_id, strict=True)}


def compare(reference: dict[tuple[str, int], int], other: dict[tuple[str, int], int]) -> dict:
    """Differences between two identity labelings of the same tracklets."""
    import numpy as np

    from pipeline.geometry import linear_assignment

    keys = sorted(set(reference) & set(other))
    ref_ids = sorted({reference[k] for k in keys})
    oth_ids = sorted({other[k] for k in keys})
    overlap = np.zeros((len(ref_ids), len(oth_ids)))
    ri = {g: i for i, g in enumerate(ref_ids)}
    oi = {g: i for i, g in enumerate(oth_ids)}
    for k in keys:
        overlap[ri[reference[k]], oi[other[k]]] += 1
    matches, _, _ = linear_assignment(-overlap, max_cost=-0.5)  # only overlapping pairs
    matched = {(int(a), int(b)) for a, b in matches}
    same = sum(1 for k in keys if (ri[reference[k]], oi[other[k]]) in matched)
    agree = sum((reference[a] == reference[b]) == (other[a] == other[b])
                for a, b in combinations(keys, 2))
    pairs = len(keys) * (len(keys) - 1) // 2
    def multi(labels: dict) -> int:
        cams: dict[int, set] = {}
        for (camera, _), g in labels.items():
            cams.setdefault(g, set()).add(camera)
        return sum(len(c) > 1 for c in cams.values())

    return {
        "tracklets": len(keys),
        "identities_reference": len(ref_ids),
        "identities_other": len(oth_ids),
        "multi_camera_reference": multi({k: reference[k] for k in keys}),
        "multi_camera_other": multi({k: other[k] for k in keys}),
        "tracklets_with_different_identity": len(keys) - same,
        "pairwise_agreement": round(agree / pairs, 4) if pairs else 1.0,
        "largest_identity_sizes_reference": sorted(Counter(reference[k] for k in keys)
                                                   .values(), reverse=True)[:5],
        "largest_identity_sizes_other": sorted(Counter(other[k] for k in keys).values(),
                                               reverse=True)[:5],
    }


def main() -> int:
    from pipeline.config import AssociationConfig, load_config
    from pipeline.runner import RunOptions, run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "sample.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "online_vs_offline")
    parser.add_argument("--lag", type=float, default=10.0)
    parser.add_argument("--min-frames", type=int, default=10)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    base = load_config(args.config)
    params = {k: v for k, v in base.association.params.items() if k != "mode"}
    summaries = {}
    for mode, extra in (("offline", {}), ("online", {"lag_s": args.lag,
                                                      "min_frames": args.min_frames})):
        config = dataclasses.replace(
            base, association=AssociationConfig(params={"mode": mode, **params, **extra}),
            output=dataclasses.replace(base.output, plots=False, save_video=False))
        summaries[mode] = run(config, args.out / mode, RunOptions(
            max_frames=args.max_frames, threads=args.threads, progress=False))
    offline = _ids(args.out / "offline" / "trajectories.csv")
    online = _ids(args.out / "online" / "trajectories_final.csv")
    report = {
        "config": str(args.config), "lag_s": args.lag, "min_frames": args.min_frames,
        "max_frames": args.max_frames,
        "revisions": summaries["online"]["revisions"],
        "comparison": compare(offline, online),
        "associate_ms": {m: s["stage_ms"].get("associate") for m, s in summaries.items()},
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
