"""Re-id models on the tracker's own question: one person later vs another person now.

The cross-dataset protocols (``reid_cross_domain``) ask "which gallery image is this
person"; a tracker and the association ask "is this box the track I lost a second ago, or
someone else in the same frame?". This scores that on PETS09-S2L1 (the shipped sequence
with gt): crops of the gt boxes every 4th frame (boxes at least 60 px high), pairs of
one person 8-40 frames apart ("same") and of two people in one frame ("different").

    python3 -m benchmarks.reid_tracking_pairs --peers \\
        --weights "osnet+rga-sc=weights/osnet_rga.safetensors" \\
        "hacnn int8=weights/hacnn_cuhk.int8.xml"

Per model: the same-person cosine distance (median, 90th percentile), the different-
person distance (5th percentile, median), AUC, and at 1% / 5% / 10% false accepts the
threshold and the share of same-person pairs accepted. The threshold columns are what to
compare with a tracker's ``appearance_thresh``: distances of different models live on
different scales. ``--precision bf16`` runs ours and the IRs in bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.lib.reid_models import PEERS, embedder_for  # noqa: E402
from pipeline.reid.embedder import crop_boxes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEQUENCE = REPO / "samples" / "pets09_s2l1"
FARS = (0.01, 0.05, 0.10)


def gt_crops(video: Path, gt: np.ndarray, *, every: int = 4, min_height: float = 60.0
             ) -> tuple[list[np.ndarray], np.ndarray]:
    """Crops of the gt boxes on every ``every``-th frame and their (frame, id) rows."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise SystemExit(f"cannot open {video}")
    crops: list[np.ndarray] = []
    rows: list[tuple[int, int]] = []
    frame = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frame += 1
        if (frame - 1) % every:
            continue
        boxes = gt[(gt[:, 0] == frame) & (gt[:, 5] >= min_height)]
        xyxy = np.column_stack([boxes[:, 2:4], boxes[:, 2:4] + boxes[:, 4:6]])
        crops += crop_boxes(image, xyxy)
        rows += [(frame, int(i)) for i in boxes[:, 1]]
    capture.release()
    return crops, np.asarray(rows, np.int64).reshape(-1, 2)


def pair_distances(embeddings: np.ndarray, rows: np.ndarray, *, lag: tuple[int, int] = (8, 40)
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances of same-person pairs ``lag`` frames apart and of different people
    in one frame (each unordered pair once)."""
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    dist = 1.0 - e @ e.T
    upper = np.triu(np.ones_like(dist, bool), 1)
    same = rows[:, 1][:, None] == rows[:, 1][None, :]
    gap = np.abs(rows[:, 0][:, None] - rows[:, 0][None, :])
    positive = dist[upper & same & (gap >= lag[0]) & (gap <= lag[1])]
    negative = dist[upper & ~same & (gap == 0)]
    return positive, negative


def summarise(positive: np.ndarray, negative: np.ndarray) -> dict[str, float]:
    """Quantiles, AUC (P(same < different)) and threshold / acceptance at each FAR."""
    ranks = np.searchsorted(np.sort(negative), positive, side="right")
    out = {"same_median": float(np.median(positive)),
           "same_p90": float(np.quantile(positive, 0.9)),
           "different_p5": float(np.quantile(negative, 0.05)),
           "different_median": float(np.median(negative)),
           "auc": float(1.0 - ranks.mean() / len(negative)),
           "pairs_same": int(len(positive)), "pairs_different": int(len(negative))}
    for far in FARS:
        threshold = float(np.quantile(negative, far))
        out[f"threshold_far{far:g}"] = threshold
        out[f"accept_far{far:g}"] = float(np.mean(positive <= threshold))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", default=[], help="NAME=PATH[@INPUT] ...")
    parser.add_argument("--peers", action="store_true",
                        help="add the OSNet-x0.25 ONNX and Intel OMZ rows")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    specs = list(args.weights) + ([f"{k}={v}" for k, v in PEERS.items()] if args.peers else [])
    if not specs:
        parser.error("give --weights NAME=PATH ... and/or --peers")
    gt = np.loadtxt(SEQUENCE / "gt" / "gt.txt", delimiter=",", ndmin=2)
    crops, rows = gt_crops(SEQUENCE / "vtest.avi", gt)
    print(f"{len(crops)} crops of {len(np.unique(rows[:, 1]))} gt ids", file=sys.stderr)
    results = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        embedder = embedder_for(path, threads=args.threads, precision=args.precision)
        results[name] = summarise(*pair_distances(embedder.embed_crops(crops), rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    print("| model | same: median / p90 | different: p5 / median | AUC | "
          + " | ".join(f"FAR {100 * f:g}%: threshold, same accepted" for f in FARS) + " |")
    print("|---" * (4 + len(FARS)) + "|")
    for name, r in results.items():
        cells = [f"{r[f'threshold_far{f:g}']:.3f}, {100 * r[f'accept_far{f:g}']:.1f}%"
                 for f in FARS]
        print(f"| {name} | {r['same_median']:.3f} / {r['same_p90']:.3f} | "
              f"{r['different_p5']:.3f} / {r['different_median']:.3f} | {r['auc']:.4f} | "
              + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
