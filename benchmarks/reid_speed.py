"""Re-id embedding throughput on this CPU: PyTorch vs ONNX Runtime vs OpenVINO.

Usage (from the repository root):
    python3 -m benchmarks.reid_speed [--weights weights/hacnn_cuhk.safetensors ...]
        [--batches 1,8,32] [--repeats 7] [--threads 2]

For every weights file (our .safetensors; the peer's .onnx is timed with ONNX
Runtime only) and batch size it reports the median crops/s over ``--repeats``
timed calls after one warm-up, all backends measured side by side in one run.
Prints JSON (docs/REID.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.reid.export import (
    export_onnx,
    export_openvino,
    onnx_runner,
    openvino_runner,
)
from pipeline.reid.weights import load_reid_model

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]

PEER = REPO.parent / "shared" / "data" / "weights" / "osnet_x0_25_msmt17.onnx"


def _median_rate(fn, batch: np.ndarray, repeats: int) -> float:
    fn(batch)  # warm-up (graph compilation, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / statistics.median(times)


def bench(weights: list[Path], batches: list[int], repeats: int, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for path in weights:
            if path.suffix == ".onnx":
                runners = {"onnxruntime": onnx_runner(path, threads)}
                h, w = 256, 128
            else:
                model, _ = load_reid_model(path)
                h, w = model.input_hw
                onnx_path = export_onnx(model, Path(tmp) / f"{path.stem}.onnx")
                xml = export_openvino(onnx_path, Path(tmp) / f"{path.stem}.xml")

                def torch_fn(x, model=model, bf16=False):
                    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16,
                                                                enabled=bf16):
                        return model(torch.from_numpy(x)).float().numpy()

                runners = {"pytorch": torch_fn,
                           "pytorch-bf16": lambda x, f=torch_fn: f(x, bf16=True),
                           "onnxruntime": onnx_runner(onnx_path, threads),
                           "openvino-f32": openvino_runner(xml, "f32", threads),
                           "openvino-bf16": openvino_runner(xml, "bf16", threads)}
            for batch_size in batches:
                batch = rng.standard_normal((batch_size, 3, h, w)).astype(np.float32)
                for backend, fn in runners.items():
                    rows.append({"weights": path.name, "backend": backend, "batch": batch_size,
                                 "crops_per_s": round(_median_rate(fn, batch, repeats), 1)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, nargs="+",
                        default=[REPO / "weights" / "hacnn_cuhk.safetensors", PEER])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    print(json.dumps(bench(args.weights, batches, args.repeats, args.threads), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
