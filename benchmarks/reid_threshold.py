"""Where to cut: same-person vs different-person cosine distances of a re-id model.

Usage (from the repository root):
    python3 -m benchmarks.reid_threshold [--weights weights/hacnn_cuhk.safetensors]

Embeds the CUHK01 test identities (ids 0486-0971, never used in training), computes
the cosine distance of every cross-camera pair, and prints quantiles of the
same-person and different-person distributions plus, for candidate thresholds, the
share of same-person pairs accepted and of different-person pairs wrongly accepted.
The association threshold in configs/ is chosen from this table (docs/PIPELINE.md).

``--reference W --at 0.25,0.40`` carries thresholds tuned for model W over to
``--weights``: for each, the distance at which ``--weights`` wrongly accepts the same
share of different-person pairs as W does at that threshold (equal false-accept rate),
with the share of same-person pairs each then accepts::

    python3 -m benchmarks.reid_threshold --weights weights/osnet_pfsa.safetensors \
        --reference weights/hacnn_cuhk.safetensors --at 0.25,0.40
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from pipeline.reid.datasets import load_protocol
from pipeline.reid.embedder import CropEmbedder

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]

DATA = REPO.parent / "shared" / "data" / "reid"


def distances(weights: Path, threads: int) -> tuple[np.ndarray, np.ndarray]:
    split = load_protocol("cuhk01", DATA)
    embedder = CropEmbedder(weights=weights, threads=threads)
    q = embedder.embed_crops([cv2.imread(str(s[0])) for s in split.query])
    g = embedder.embed_crops([cv2.imread(str(s[0])) for s in split.gallery])
    d = 1.0 - q @ g.T
    same = np.array([s[1] for s in split.query])[:, None] == np.array(
        [s[1] for s in split.gallery])[None, :]
    return d[same], d[~same]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path,
                        default=REPO / "weights" / "hacnn_cuhk.safetensors")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", type=Path, default=None,
                        help="carry thresholds of this model over (equal false-accept rate)")
    parser.add_argument("--at", default="0.25,0.40", help="the reference's thresholds")
    args = parser.parse_args()
    pos, neg = distances(args.weights, args.threads)
    if args.reference is not None:
        ref_pos, ref_neg = distances(args.reference, args.threads)
        rows = []
        for t in (float(v) for v in args.at.split(",")):
            far = float((ref_neg <= t).mean())
            ours = float(np.quantile(neg, far)) if far > 0 else float(neg.min())
            rows.append({"reference_threshold": t, "false_accept": round(far, 5),
                         "threshold": round(ours, 4),
                         "reference_same_accepted": round(float((ref_pos <= t).mean()), 4),
                         "same_accepted": round(float((pos <= ours).mean()), 4)})
        print(json.dumps({"weights": str(args.weights), "reference": str(args.reference),
                          "equal_false_accept": rows}, indent=1))
        return 0
    quant = (0.05, 0.25, 0.5, 0.75, 0.95)
    table = [{"threshold": t, "same_accepted": round(float((pos <= t).mean()), 4),
              "different_accepted": round(float((neg <= t).mean()), 5)}
             for t in np.round(np.arange(0.10, 0.71, 0.05), 2).tolist()]
    print(json.dumps({
        "weights": str(args.weights), "pairs_same": int(pos.size), "pairs_different": int(neg.size),
        "same_quantiles": {q: round(float(np.quantile(pos, q)), 4) for q in quant},
        "different_quantiles": {q: round(float(np.quantile(neg, q)), 4) for q in quant},
        "by_threshold": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
