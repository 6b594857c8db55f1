"""Re-id accuracy against crop height: where ``reid.min_height_px`` should cut.

Usage (from the repository root):
    python3 -m benchmarks.reid_crop_height [--heights 160,96,64,48,32,24]

The CUHK01 test protocol (ids 0486-0971, cam1 -> cam2 and back) with every crop first
shrunk to a height of h pixels (aspect kept, area interpolation, as a distant person
appears in a frame), then embedded by the shipped HA-CNN (OpenVINO, as in the configs),
which resizes it to its input again. Both query and gallery are shrunk, and (second
row) only the query, as when a far person is matched against near views. Prints JSON:
Rank-1 and mAP (mean of the two directions) per height.
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
from pipeline.reid.metrics import cosine_distance, evaluate_rank

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]

DATA = REPO.parent / "shared" / "data" / "reid"


def shrink(image: np.ndarray, height: int) -> np.ndarray:
    """The crop as it would look ``height`` pixels tall (never enlarged)."""
    if image.shape[0] <= height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=REPO / "weights" /
                        "hacnn_cuhk.safetensors")
    parser.add_argument("--heights", default="160,96,64,48,32,24")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    split = load_protocol("cuhk01", DATA)
    embedder = CropEmbedder(weights=args.weights, backend="openvino", precision="bf16",
                            threads=args.threads)
    query = [cv2.imread(str(s[0])) for s in split.query]
    gallery = [cv2.imread(str(s[0])) for s in split.gallery]
    q_ids, q_cams = np.array([s[1] for s in split.query]), np.array([s[2] for s in split.query])
    g_ids, g_cams = (np.array([s[1] for s in split.gallery]),
                     np.array([s[2] for s in split.gallery]))
    full_q, full_g = embedder.embed_crops(query), embedder.embed_crops(gallery)

    def score(eq: np.ndarray, eg: np.ndarray, back_q: np.ndarray, back_g: np.ndarray) -> dict:
        there = evaluate_rank(cosine_distance(eq, eg), q_ids, g_ids, q_cams, g_cams)
        back = evaluate_rank(cosine_distance(back_q, back_g), g_ids, q_ids, g_cams, q_cams)
        return {"rank1": round(50 * (there.rank(1) + back.rank(1)), 1),
                "mAP": round(50 * (there.mAP + back.mAP), 1)}

    report = {"native_height_px": int(np.median([im.shape[0] for im in query])), "rows": []}
    for height in (int(v) for v in args.heights.split(",")):
        small_q = embedder.embed_crops([shrink(im, height) for im in query])
        small_g = embedder.embed_crops([shrink(im, height) for im in gallery])
        row = {"height_px": height, "both": score(small_q, small_g, small_g, small_q),
               "query_only": score(small_q, full_g, small_g, full_q)}
        report["rows"].append(row)
        print(row, file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
