"""Parameters and compute of the re-id models (the params / GFLOPs columns of docs/REID.md).

Usage (from the repository root):
    python3 -m benchmarks.reid_complexity [--models hacnn rga pfsa] [--rga-variant sc]

Builds each registered model with its default configuration (random weights: the
counts do not depend on training) and runs one embedding of a single crop at the
model's input size under ``torch.utils.flop_counter.FlopCounterMode``. Reports the
embedding network only (no classifier heads), in multiply-accumulates (GMACs, the
figure re-id papers call "FLOPs") and in floating-point operations (GFLOPs = 2 x
GMACs for convolutions and matrix products). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.reid.models import REID_MODELS, build_reid_model

REPO = Path(__file__).resolve().parents[1]


def complexity(name: str, **kwargs: object) -> dict:
    """Parameter count and per-crop compute of the registered model ``name``."""
    model = build_reid_model(name, **kwargs).eval()
    h, w = model.input_hw
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 3, h, w))
    flops = counter.get_total_flops()
    return {
        "model": name,
        "config": kwargs,
        "input_hw": [h, w],
        "embedding_dim": int(model.embedding_dim),
        "params_m": round(params / 1e6, 2),
        "gflops": round(flops / 1e9, 2),
        "gmacs": round(flops / 2e9, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=sorted(REID_MODELS),
                        choices=sorted(REID_MODELS))
    parser.add_argument("--rga-variant", default="sc", choices=("s", "c", "sc"))
    args = parser.parse_args()
    rows = []
    for name in args.models:
        kwargs = {"variant": args.rga_variant} if name == "rga" else {}
        rows.append(complexity(name, **kwargs))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
