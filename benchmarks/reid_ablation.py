"""Which part of an HA-CNN embedding carries the accuracy, and what flipping adds.

Usage (from the repository root):
    python3 -m benchmarks.reid_ablation [--weights weights/hacnn_cuhk.safetensors]
        [--data ../shared/data/reid] [--threads 2]

Embeds the CUHK01 test images (the protocol of ``mtmc reid eval``) once, un-flipped and
mirrored, with PyTorch fp32, and scores with the same code as ``mtmc reid eval``:

* ``global`` / ``local``: one branch's feature alone (L2-normalised);
* ``joint``: the shipped embedding (both normalised, concatenated, normalised);
* ``joint + flip``: joint averaged with the mirrored crop's (``reid.flip`` / ``--flip``).

Prints a markdown table (Rank-1 / mAP both directions) and JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pipeline.reid.embedder import preprocess_crops
from pipeline.reid.evaluate import evaluate_protocol
from pipeline.reid.weights import load_reid_model

REPO = Path(__file__).resolve().parents[1]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def branch_features(model: torch.nn.Module, crops: list[np.ndarray], *, flip: bool,
                    batch: int = 64) -> dict[str, np.ndarray]:
    """Per-branch features of BGR crops (mirrored first if ``flip``), L2-normalised."""
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(crops), batch):
        x = preprocess_crops(crops[start:start + batch], model.input_hw, bgr=True)
        if flip:
            x = np.ascontiguousarray(x[..., ::-1])
        with torch.inference_mode():
            feats = model.features(torch.from_numpy(x))
        for name, value in feats.items():
            out.setdefault(name, []).append(value.float().numpy())
    return {name: _unit(np.concatenate(parts)) for name, parts in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "hacnn_cuhk.safetensors")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "reid")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "reid_ablation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_reid_model(args.weights)
    model = model.float().eval()

    captured: dict[str, dict[str, np.ndarray]] = {}

    def capture(crops: list[np.ndarray]) -> np.ndarray:
        captured["plain"] = branch_features(model, crops, flip=False)
        captured["flip"] = branch_features(model, crops, flip=True)
        return captured["plain"]["global"]

    evaluate_protocol(capture, root=args.data)
    plain, mirrored = captured["plain"], captured["flip"]
    joint = _unit(np.concatenate([plain["global"], plain["local"]], axis=1))
    joint_m = _unit(np.concatenate([mirrored["global"], mirrored["local"]], axis=1))
    variants = {
        "global": plain["global"],
        "local": plain["local"],
        "joint": joint,
        "joint + flip": _unit(joint + joint_m),
    }
    rows = []
    for name, emb in variants.items():
        res = evaluate_protocol(lambda crops, emb=emb: emb, root=args.data)
        row = {"variant": name}
        for direction, m in res["directions"].items():
            row[direction] = {k: round(float(m[k]), 4) for k in ("rank1", "rank5", "mAP")}
        rows.append(row)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"weights": str(args.weights), "rows": rows}, indent=1))
    print(f"{args.weights}")
    print("| embedding | R1 1→2 | mAP 1→2 | R1 2→1 | mAP 2→1 |")
    print("|---|---|---|---|---|")
    for r in rows:
        a, b = r["cam1->cam2"], r["cam2->cam1"]
        print(f"| {r['variant']} | {100 * a['rank1']:.1f} | {100 * a['mAP']:.1f} | "
              f"{100 * b['rank1']:.1f} | {100 * b['mAP']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
