"""Train any REID_MODELS model with identity classifiers (+ batch-hard triplet).

The model keeps the inference contract; classifier heads and losses live in
:class:`ReidTrainingWrapper`. Used by ``mtmc reid train`` (``add_arguments``/``main``) and
runnable as ``python -m pipeline.reid.train`` for long detached runs.

Outputs: the weights (``--out`` .safetensors + model card .json, rewritten every
``--save-every`` epochs so a usable file exists early), a JSON-lines log beside them
(``<out stem>.train.jsonl``, one line per epoch) and a resumable checkpoint in
``--checkpoint-dir`` (default ``.cache/reid_train/<out stem>/last.pt``, git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from pipeline.reid.datasets import ReidSplit, load_image_array, load_protocol
from pipeline.reid.models import REID_MODELS, build_reid_model
from pipeline.reid.transforms import IMAGENET_MEAN, IMAGENET_STD, augment, normalize
from pipeline.reid.weights import model_name, save_reid_weights

log = logging.getLogger(__name__)


class ReidTrainingWrapper(nn.Module):
    """A re-id model plus one linear identity classifier per feature branch (and a joint
    classifier on their concatenation when there are several branches).

    ``forward(x)`` returns (features dict, logits dict); logits keys are the branch names
    and ``"joint"``.
    """

    def __init__(self, *, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            probe = model.features(torch.zeros(2, 3, *model.input_hw))
        model.train(was_training)
        dims = {k: v.shape[1] for k, v in probe.items()}
        self.classifiers = nn.ModuleDict({k: nn.Linear(d, num_classes) for k, d in dims.items()})
        if len(dims) > 1:
            self.classifiers["joint"] = nn.Linear(sum(dims.values()), num_classes)
        self.branches = list(dims)

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        feats = self.model.features(x)
        logits = {k: self.classifiers[k](feats[k]) for k in self.branches}
        if "joint" in self.classifiers:
            logits["joint"] = self.classifiers["joint"](
                torch.cat([feats[k] for k in self.branches], 1)
            )
        return feats, logits


def batch_hard_triplet(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) on L2-normalised embeddings [N,D]."""
    emb = F.normalize(emb.float(), dim=1)
    dist = (2 - 2 * emb @ emb.t()).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    hardest_pos = (dist * same).max(1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def pk_batches(
    labels: np.ndarray, p: int, k: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Identity-balanced batches: P identities x K images each (with replacement only
    when an identity has fewer than K images). Yields len(labels) // (P*K) batches."""
    by_id: dict[int, np.ndarray] = {}
    for label in np.unique(labels):
        by_id[int(label)] = np.flatnonzero(labels == label)
    ids = np.array(sorted(by_id))
    p = min(p, len(ids))
    for _ in range(max(1, len(labels) // (p * k))):
        chosen = rng.choice(ids, size=p, replace=False)
        batch = [rng.choice(by_id[int(c)], size=k, replace=len(by_id[int(c)]) < k) for c in chosen]
        yield np.concatenate(batch)


def lr_at(
    step: int,
    *,
    total: int,
    warmup: int,
    base: float,
    final_ratio: float = 0.01,
    progress: float | None = None,
) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``final_ratio * base``.

    ``progress`` in [0, 1] (e.g. the elapsed share of a time budget) overrides the
    step-based position in the cosine phase when it is further along.
    """
    if step < warmup:
        return base * (0.1 + 0.9 * step / max(1, warmup))
    t = (step - warmup) / max(1, total - warmup)
    if progress is not None:
        t = max(t, progress)
    return base * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def autocast_context(device: str, amp: str) -> contextlib.AbstractContextManager:
    """Autocast for ``amp`` in {"off", "fp16", "bf16"} on ``device``'s type."""
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _embed(model: nn.Module, x: torch.Tensor, device: str, amp: str) -> torch.Tensor:
    with autocast_context(device, amp):
        return model(x).float().cpu()


@torch.no_grad()
def monitor_rank1(
    model: nn.Module,
    amp: str,
    split: ReidSplit,
    *,
    device: str,
    hw: tuple[int, int],
    cache_dir: Path | None,
) -> float:
    """Rank-1 of query vs gallery (cosine, cross-camera by protocol); monitoring only."""
    model.eval()
    embs = []
    for samples in (split.query, split.gallery):
        images = torch.from_numpy(load_image_array(samples, hw=hw, cache_dir=cache_dir))
        parts = [
            _embed(model, normalize(images[i : i + 256]).to(device), device, amp)
            for i in range(0, len(images), 256)
        ]
        embs.append(torch.cat(parts))
    q_ids = torch.tensor([s[1] for s in split.query])
    g_ids = torch.tensor([s[1] for s in split.gallery])
    best = (embs[0] @ embs[1].t()).argmax(1)
    model.train()
    return float((g_ids[best] == q_ids).float().mean())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``reid train`` options to ``parser``."""
    parser.add_argument("--model", default="hacnn", choices=sorted(REID_MODELS))
    parser.add_argument("--model-config", default="{}", help="JSON constructor kwargs")
    parser.add_argument(
        "--data", type=Path, required=True, help="data root (e.g. shared/data/reid)"
    )
    parser.add_argument("--protocol", default="cuhk01", help="cuhk01, market1501 or folder")
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors path")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-p", type=int, default=32, help="identities per batch")
    parser.add_argument("--batch-k", type=int, default=4, help="images per identity")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--warmup-epochs", type=float, default=3.0)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--triplet-weight", type=float, default=1.0)
    parser.add_argument("--margin", type=float, default=0.3)
    parser.add_argument("--erase-p", type=float, default=0.5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "off", "fp16", "bf16"],
        help="auto = fp16 on CUDA, off on CPU",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    parser.add_argument("--save-every", type=int, default=5, help="epochs between saves")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="log monitoring Rank-1 on the protocol's test split every N epochs",
    )
    parser.add_argument(
        "--time-budget-min",
        type=float,
        default=0.0,
        help="stop after this many minutes of training; the cosine schedule follows the "
        "larger of step progress and elapsed-time progress so it anneals fully either way",
    )
    parser.add_argument("--max-iters", type=int, default=0, help="stop each epoch early (tests)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def train(args: argparse.Namespace) -> dict:
    """Run training as configured by ``args``; returns the final model card."""
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    device = args.device
    amp = args.amp if args.amp != "auto" else ("fp16" if device.startswith("cuda") else "off")

    split = load_protocol(args.protocol, args.data)
    model = build_reid_model(args.model, **json.loads(args.model_config))
    hw = tuple(model.input_hw)
    t0 = time.time()
    images = torch.from_numpy(load_image_array(split.train, hw=hw, cache_dir=args.cache_dir))
    labels = np.array([s[1] for s in split.train])
    num_classes = int(labels.max()) + 1
    log.info(
        "%d training images, %d ids, loaded in %.1fs", len(labels), num_classes, time.time() - t0
    )

    wrapper = ReidTrainingWrapper(model=model, num_classes=num_classes).to(device)
    optimizer = torch.optim.AdamW(wrapper.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16" and device.startswith("cuda"))
    iters = len(labels) // (min(args.batch_p, num_classes) * args.batch_k)
    if args.max_iters:
        iters = min(iters, args.max_iters)
    total_steps = iters * args.epochs
    warmup = int(args.warmup_epochs * iters)

    ckpt_dir = args.checkpoint_dir or Path(".cache") / "reid_train" / args.out.stem
    ckpt_path = ckpt_dir / "last.pt"
    log_path = args.out.with_name(args.out.stem + ".train.jsonl")
    start_epoch, wall_before = 0, 0.0
    if args.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        wrapper.load_state_dict(state["wrapper"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, wall_before = state["epoch"], state["wall_s"]
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["gen_rng"])
        rng.bit_generator.state = json.loads(state["np_rng"])
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    elif log_path.exists():
        log_path.unlink()

    card = {
        "architecture": args.model,
        "input_hw": list(hw),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "colour_order": "RGB",
        "training_data": {
            "protocol": split.name,
            "description": split.description,
            "ids": num_classes,
            "images": len(labels),
        },
        "recipe": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in {"func"} and not callable(v)
        }
        | {"amp_used": amp},
        "hardware": {
            "device": device,
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        },
        "git_commit": _git_commit(),
    }
    wrapper.train()
    t_start = time.time()
    metrics: dict = {}
    budget_s = args.time_budget_min * 60.0
    out_of_time = False
    lr = args.lr
    for epoch in range(start_epoch, args.epochs):
        t_epoch = time.time()
        sums = {"loss": 0.0, "ce": 0.0, "tri": 0.0, "correct": 0, "seen": 0}
        batches = pk_batches(labels, args.batch_p, args.batch_k, rng)
        bar = None
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=iters, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
        for it, idx in enumerate(batches):
            if it >= iters:
                break
            progress = None
            if budget_s > 0:
                # Warm-up is step-based; the time budget compresses only the cosine phase.
                progress = (wall_before + time.time() - t_start) / budget_s
                if progress >= 1.0:
                    out_of_time = True
                    break
            lr = lr_at(
                epoch * iters + it,
                total=total_steps,
                warmup=warmup,
                base=args.lr,
                progress=progress,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = augment(
                images[torch.from_numpy(idx)],
                generator=gen,
                erase_p=args.erase_p,
                pad=max(4, hw[0] // 16),
            ).to(device, non_blocking=True)
            y = torch.from_numpy(labels[idx]).to(device)
            with autocast_context(device, amp):
                feats, logits = wrapper(x)
            ce = sum(
                F.cross_entropy(lg.float(), y, label_smoothing=args.label_smoothing)
                for lg in logits.values()
            ) / len(logits)
            tri = torch.zeros((), device=device)
            if args.triplet_weight > 0:
                tri = sum(batch_hard_triplet(feats[k], y, args.margin) for k in wrapper.branches)
                tri = tri / len(wrapper.branches)
            loss = ce + args.triplet_weight * tri
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            head = logits.get("joint", next(iter(logits.values())))
            sums["loss"] += float(loss.detach()) * len(y)
            sums["ce"] += float(ce.detach()) * len(y)
            sums["tri"] += float(tri.detach()) * len(y)
            sums["correct"] += int((head.argmax(1) == y).sum())
            sums["seen"] += len(y)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{sums['loss'] / sums['seen']:.3f}",
                    acc=f"{sums['correct'] / sums['seen']:.3f}",
                    lr=f"{lr:.2e}",
                )
        if bar is not None:
            bar.close()
        seconds = time.time() - t_epoch
        if sums["seen"] == 0:
            # The budget ran out exactly at an epoch boundary: the last epoch is saved below
            # only if it was not saved already.
            if metrics and (epoch % args.save_every != 0):
                card.update(
                    {
                        "epochs": epoch,
                        "epochs_done": epoch,
                        "complete": True,
                        "stopped_by_time_budget": True,
                        "wall_time_s": round(wall_before + time.time() - t_start, 1),
                        "final_train": metrics,
                        "weights_name": model_name(model),
                    }
                )
                model.eval()
                save_reid_weights(model, args.out, card=card)
            break
        seen = sums["seen"]
        metrics = {
            "epoch": epoch + 1,
            "loss": sums["loss"] / seen,
            "ce": sums["ce"] / seen,
            "triplet": sums["tri"] / seen,
            "acc": sums["correct"] / seen,
            "lr": lr,
            "seconds": round(seconds, 1),
            "images_per_s": round(seen / seconds, 1),
            # < 1 only when the time budget cut the epoch short
            "epoch_fraction": round(min(seen / (iters * min(args.batch_p, num_classes)
                                                * args.batch_k), 1.0), 3),
        }
        done = epoch + 1
        last = done == args.epochs or out_of_time
        if args.eval_every and split.query and (done % args.eval_every == 0 or last):
            metrics["monitor_rank1"] = monitor_rank1(
                model, amp, split, device=device, hw=hw, cache_dir=args.cache_dir
            )
        log.info("%s", json.dumps(metrics))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        wall = wall_before + time.time() - t_start
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "wrapper": wrapper.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": done,
                "wall_s": wall,
                "torch_rng": torch.get_rng_state(),
                "gen_rng": gen.get_state(),
                "np_rng": json.dumps(rng.bit_generator.state),
            },
            ckpt_dir / "last.tmp",
        )
        os.replace(ckpt_dir / "last.tmp", ckpt_path)
        if done % args.save_every == 0 or last:
            card.update(
                {
                    "epochs": done if out_of_time else args.epochs,
                    "epochs_done": done if metrics["epoch_fraction"] >= 1.0
                    else round(epoch + metrics["epoch_fraction"], 3),
                    "complete": last,
                    "stopped_by_time_budget": out_of_time,
                    "wall_time_s": round(wall, 1),
                    "final_train": metrics,
                    "weights_name": model_name(model),
                }
            )
            model.eval()
            save_reid_weights(model, args.out, card=card)
            model.train()
        if out_of_time:
            log.info("time budget of %.1f min used up after epoch %d", args.time_budget_min, done)
            break
    return card


def main(args: argparse.Namespace) -> int:
    """Entry point for ``mtmc reid train``; returns a process exit code."""
    train(args)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
