"""Re-id weights on the CUHK01 protocol and the cross-domain protocols, one table.

Every model is evaluated with the same code as ``mtmc reid eval`` (cosine, no
re-ranking) on: CUHK01 (camera 1 -> 2 and 2 -> 1) and the held-out folders PRID 2011
(camera a -> b, 549 distractors), VIPeR (a -> b), GRID (first -> second camera) and
i-LIDS (first image -> the others). Models trained with ``--extra-train indomain`` never
saw those four folders, so their rows measure generalisation to unseen cameras.

Peers run through the same embedder as our models: ``--peers`` adds the OSNet-x0.25
MSMT17 ONNX file and Intel's four Open Model Zoo IRs (BGR 0-255 input, declared with
``@bgr255``). A weight given as ``NAME=PATH[@INPUT]`` takes any declared input
(``mtmc reid eval --input``).

Usage (from the repository root)::

    python3 -m benchmarks.reid_cross_domain --peers \\
        --weights osnet_pfsa=weights/osnet_pfsa.safetensors \\
        hacnn=weights/hacnn_cuhk.safetensors --json runs/xdomain.json

Prints a Markdown table of Rank-1 / mAP (percent) per model and protocol, with each
model's crops/s on the CUHK01 images (batch 64, ``--threads``, run in series: compare
rows of one run only).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

from benchmarks.lib.reid_models import PEERS, embedder_for  # noqa: E402
from pipeline.reid.evaluate import evaluate_protocol  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = ("cuhk01", "prid2011", "viper", "grid", "ilids")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", default=[], help="NAME=PATH[@INPUT] ...")
    parser.add_argument("--peers", action="store_true",
                        help="add the OSNet-x0.25 ONNX and Intel OMZ 0277/0286/0287/0288 rows")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="torch / OpenVINO arithmetic (ONNX Runtime runs fp32)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "reid")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    speed: dict[str, float] = {}
    specs = list(args.weights) + ([f"{k}={v}" for k, v in PEERS.items()] if args.peers else [])
    if not specs:
        parser.error("give --weights NAME=PATH ... and/or --peers")
    for spec in specs:
        name, _, path = spec.partition("=")
        embedder = embedder_for(path, threads=args.threads, precision=args.precision)
        results[name] = {}
        for proto in args.protocols.split(","):
            res = evaluate_protocol(embedder.embed_crops, root=args.data, protocol=proto)
            results[name][proto] = res["directions"]
            if proto == args.protocols.split(",")[0]:
                speed[name] = res["num_images"] / res["embed_seconds"]
            print(json.dumps({"model": name, "protocol": proto,
                              "directions": res["directions"]}), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "crops_per_s": speed,
                                         "precision": args.precision,
                                         "threads": args.threads}, indent=2))
    cols = [(p, d) for p in args.protocols.split(",")
            for d in next(iter(results.values()))[p]]
    print("| model | " + " | ".join(f"{p} {d}" for p, d in cols) + " | crops/s |")
    print("|---" * (len(cols) + 2) + "|")
    for name, res in results.items():
        cells = [f"{100 * res[p][d]['rank1']:.1f} / {100 * res[p][d]['mAP']:.1f}"
                 for p, d in cols]
        print(f"| {name} | " + " | ".join(cells) + f" | {speed[name]:.0f} |")


if __name__ == "__main__":
    main()
