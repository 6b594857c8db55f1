"""Re-id training throughput: the training loop against the model's own ceiling.

For each model, on one device, measured side by side in one process:

* ``ceiling``: forward + backward + AdamW step of the training wrapper (classifiers,
  cross-entropy + triplet) on one batch already on the device — what the loop could
  reach if feeding batches cost nothing;
* ``loop``: the trainer's own batches (:class:`pipeline.reid.batches.TrainBatches`: P x K
  draw, gather and vectorised augmentation on the device, optional prefetch) feeding the
  same step;
* ``loop_legacy`` (``--legacy``): the previous trainer's feeding (per-batch augmentation
  on the CPU with per-sample Python loops, commit ca52b59's ``transforms.augment``,
  re-implemented here for the comparison), then a synchronous copy to the device.

Each variant runs ``--warmup`` steps, then ``--steps`` timed steps; the median of
``--repeats`` blocks is reported as images/s, with the loop's share of the ceiling.

Usage (from the repository root)::

    python3 -m benchmarks.reid_train_speed --models hacnn --device cpu --threads 2 \\
        --batch-p 16 --steps 5 --repeats 3 --legacy
    python3 -m benchmarks.reid_train_speed --models hacnn pfsa rga --device cuda \\
        --amp bf16 --channels-last on --compile   # on a GPU

Prints one JSON object per line (model, variant, options, images/s per block, median).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from pipeline.reid.batches import TrainBatches
from pipeline.reid.models import build_reid_model
from pipeline.reid.recipe import ReidTrainingWrapper, autocast_context, batch_hard_triplet
from pipeline.reid.transforms import AugmentConfig, normalize


def _legacy_augment(images: torch.Tensor, gen: torch.Generator, pad: int) -> torch.Tensor:
    """The feeding of commit ca52b59 (per-sample loops on the CPU), for comparison only."""
    x = normalize(images)
    n, _, h, w = x.shape
    mask = torch.rand(n, generator=gen) < 0.5
    x = torch.where(mask.view(n, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).tolist()
    x = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs)])
    coins = torch.rand(n, generator=gen).tolist()
    for i in range(n):
        if coins[i] >= 0.5:
            continue
        for _ in range(10):
            u = torch.rand(3, generator=gen).tolist()
            area = h * w * (0.02 + u[0] * 0.38)
            log_r = math.log(0.3) + u[1] * (-2 * math.log(0.3))
            eh = int(round(math.sqrt(area * math.exp(log_r))))
            ew = int(round(math.sqrt(area / math.exp(log_r))))
            if 0 < eh < h and 0 < ew < w:
                y0 = int(u[2] * (h - eh))
                x0 = int(torch.randint(0, w - ew + 1, (1,), generator=gen))
                x[i, :, y0:y0 + eh, x0:x0 + ew] = torch.randn(3, eh, ew, generator=gen)
                break
    return x.contiguous()


def _step_fn(wrapper, optimizer, device: str, amp: str):
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast_context(device, amp):
            feats, logits = wrapper(x)
        ce = sum(F.cross_entropy(lg.float(), y, label_smoothing=0.1)
                 for lg in logits.values()) / len(logits)
        tri = sum(batch_hard_triplet(feats[k], y, 0.3) for k in wrapper.branches)
        loss = ce + tri / len(wrapper.branches)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _blocks(run_steps, args) -> list[float]:
    run_steps(args.warmup)
    out = []
    for _ in range(args.repeats):
        _sync(args.device)
        t0 = time.perf_counter()
        run_steps(args.steps)
        _sync(args.device)
        out.append(args.steps * args.batch_p * args.batch_k / (time.perf_counter() - t0))
    return out


def measure(model_name: str, args: argparse.Namespace) -> list[dict]:
    """Ceiling, loop (and legacy loop) images/s for one model."""
    torch.manual_seed(0)
    device, amp = args.device, args.amp
    model = build_reid_model(model_name)
    h, w = model.input_hw
    num_images, num_ids = args.num_images, args.num_images // 4
    rng_np = np.random.default_rng(0)
    images = torch.from_numpy(rng_np.integers(0, 256, (num_images, h, w, 3), dtype=np.uint8))
    labels = np.repeat(np.arange(num_ids), 4)
    channels_last = args.channels_last == "on"
    wrapper = ReidTrainingWrapper(model=model, num_classes=num_ids).to(device)
    if channels_last:
        wrapper = wrapper.to(memory_format=torch.channels_last)
    if args.compile:
        wrapper.model.features = torch.compile(wrapper.model.features)
    wrapper.train()
    optimizer = torch.optim.AdamW(wrapper.parameters(), lr=1e-4, weight_decay=5e-4)
    step = _step_fn(wrapper, optimizer, device, amp)
    aug = AugmentConfig(pad=max(4, h // 16), jitter_p=args.jitter_p, gray_p=args.gray_p,
                        style_p=args.style_p)
    batches = TrainBatches(images, labels, device=device, p=args.batch_p, k=args.batch_k,
                           rng=np.random.default_rng(1), seed=1, augment=aug,
                           channels_last=channels_last, prefetch=args.prefetch == "on")
    x0, y0, _ = next(iter(batches.epoch(1)))
    options = {"device": device, "amp": amp, "channels_last": channels_last,
               "compile": args.compile, "prefetch": args.prefetch, "threads": args.threads,
               "batch": args.batch_p * args.batch_k, "jitter_p": args.jitter_p,
               "gray_p": args.gray_p, "style_p": args.style_p}

    def ceiling(n: int) -> None:
        for _ in range(n):
            step(x0, y0)

    def loop(n: int) -> None:
        for x, y, _ in batches.epoch(n):
            step(x, y)

    gen = torch.Generator().manual_seed(2)

    def legacy(n: int) -> None:
        for idx in batches._indices(n):  # same P x K draws
            x = _legacy_augment(images[torch.from_numpy(idx)], gen, max(4, h // 16))
            x = x.to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            step(x, torch.from_numpy(labels[idx]).to(device))

    variants = {"ceiling": ceiling, "loop": loop}
    if args.legacy:
        variants["loop_legacy"] = legacy
    rows = []
    for name, fn in variants.items():
        blocks = _blocks(fn, args)
        rows.append({"model": model_name, "variant": name, "options": options,
                     "images_per_s": [round(b, 1) for b in blocks],
                     "median": round(statistics.median(blocks), 1)})
    top = rows[0]["median"]
    for row in rows[1:]:
        row["share_of_ceiling"] = round(row["median"] / top, 3)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["hacnn"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off")
    parser.add_argument("--channels-last", choices=("on", "off"), default="off")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--prefetch", choices=("on", "off"), default="off")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-p", type=int, default=32)
    parser.add_argument("--batch-k", type=int, default=4)
    parser.add_argument("--num-images", type=int, default=2048, help="synthetic images")
    parser.add_argument("--jitter-p", type=float, default=0.0)
    parser.add_argument("--gray-p", type=float, default=0.0)
    parser.add_argument("--style-p", type=float, default=0.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--legacy", action="store_true", help="also time the old feeding")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        for row in measure(name, args):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
