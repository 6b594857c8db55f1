"""Re-id weights on the CUHK01 protocol and the cross-domain protocols, one table.

Every model is evaluated with the same code as ``mtmc reid eval`` (cosine, no
re-ranking) on: CUHK01 (camera 1 -> 2 and 2 -> 1) and the held-out folders PRID 2011
(camera a -> b, 549 distractors), VIPeR (a -> b), GRID (first -> second camera) and
i-LIDS (first image -> the others). Models trained with ``--extra-train indomain`` never
saw those four folders, so their rows measure generalisation to unseen cameras.

Usage (from the repository root)::

    python3 -m benchmarks.reid_cross_domain \\
        --weights hacnn=weights/hacnn_cuhk.safetensors \\
        osnet=../shared/data/weights/osnet_x0_25_msmt17.onnx --json runs/xdomain.json

Prints a Markdown table of Rank-1 / mAP (percent) per model and protocol.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

from pipeline.reid.embedder import CropEmbedder  # noqa: E402
from pipeline.reid.evaluate import evaluate_protocol  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = ("cuhk01", "prid2011", "viper", "grid", "ilids")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", required=True, help="NAME=PATH ...")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "reid")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for spec in args.weights:
        name, _, path = spec.partition("=")
        backend = "onnx" if path.endswith(".onnx") else "torch"
        embedder = CropEmbedder(weights=Path(path), backend=backend, device="cpu",
                                batch_size=64, threads=args.threads)
        results[name] = {}
        for proto in args.protocols.split(","):
            res = evaluate_protocol(embedder.embed_crops, root=args.data, protocol=proto)
            results[name][proto] = res["directions"]
            print(json.dumps({"model": name, "protocol": proto,
                              "directions": res["directions"]}), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    cols = [(p, d) for p in args.protocols.split(",")
            for d in next(iter(results.values()))[p]]
    print("| model | " + " | ".join(f"{p} {d}" for p, d in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, res in results.items():
        cells = [f"{100 * res[p][d]['rank1']:.1f} / {100 * res[p][d]['mAP']:.1f}"
                 for p, d in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
