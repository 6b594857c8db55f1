"""Crops/s of re-id models as the pipeline runs them (``CropEmbedder``), side by side.

Usage (from the repository root)::

    python3 -m benchmarks.reid_embedder_speed --rounds 5 --models \\
        "hacnn int8=weights/hacnn_cuhk.safetensors:openvino:int8" \\
        "osnet+pfsa bf16=weights/osnet_pfsa.safetensors:openvino:bf16"

Each model is ``NAME=PATH[@INPUT][:BACKEND[:PRECISION]]`` (backend default: by suffix,
torch for our safetensors; precision default fp32). The crops are real CUHK01 test images
(BGR, their native 160x60, resized by the embedder as in a run), so the figure includes
the embedder's pre-processing. Rounds are interleaved (model A, B, A, B, ...) and the
median crops/s per model and batch size is printed with its ratio to the first model,
so a noisy machine affects every row alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import cv2

os.environ.setdefault("YOLO_OFFLINE", "1")

from pipeline.reid.datasets import read_cuhk_folder  # noqa: E402
from pipeline.reid.embedder import CropEmbedder  # noqa: E402
from pipeline.reid.runtimes import backend_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "reid"


def _embedder(spec: str, threads: int, batch: int) -> CropEmbedder:
    path, *rest = spec.split(":")
    path, _, declared = path.partition("@")
    backend = rest[0] if rest else backend_for(path)
    precision = rest[1] if len(rest) > 1 else "fp32"
    return CropEmbedder(weights=Path(path), backend=backend, precision=precision,
                        threads=threads, batch_size=batch, input_spec=declared or None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="NAME=PATH[@INPUT][:BACKEND[:PRECISION]] ...")
    parser.add_argument("--batches", default="8,32")
    parser.add_argument("--crops", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    paths = [p for p, _, _ in read_cuhk_folder(DATA / "cuhk01")][: args.crops]
    crops = [cv2.imread(str(p)) for p in paths]
    batches = [int(b) for b in args.batches.split(",")]
    names = [m.partition("=")[0] for m in args.models]
    embedders = {(m.partition("=")[0], b): _embedder(m.partition("=")[2], args.threads, b)
                 for m in args.models for b in batches}
    for e in embedders.values():  # warm-up (OpenVINO compiles lazily for new shapes)
        e.embed_crops(crops[:64])
    rates: dict[tuple[str, int], list[float]] = {k: [] for k in embedders}
    for _ in range(args.rounds):
        for key, e in embedders.items():
            t0 = time.perf_counter()
            e.embed_crops(crops)
            rates[key].append(len(crops) / (time.perf_counter() - t0))
    result = {f"{n} @{b}": statistics.median(rates[(n, b)]) for n in names for b in batches}
    print("| model | " + " | ".join(f"batch {b} crops/s (x first)" for b in batches) + " |")
    print("|---" * (len(batches) + 1) + "|")
    for n in names:
        cells = []
        for b in batches:
            rate, first = result[f"{n} @{b}"], result[f"{names[0]} @{b}"]
            cells.append(f"{rate:.0f} ({rate / first:.2f}x)")
        print(f"| {n} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"median_crops_per_s": result, "rounds": args.rounds,
                                         "threads": args.threads, "crops": len(crops)},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
