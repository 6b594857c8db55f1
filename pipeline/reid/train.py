"""Train any REID_MODELS model with identity classifiers (+ batch-hard triplet).

The model keeps the inference contract; classifier heads, losses, sampling and the
schedule live in :mod:`pipeline.reid.recipe`. Used by ``mtmc reid train``
(``add_arguments``/``main``) and runnable as ``python -m pipeline.reid.train`` for long
detached runs.

Outputs: the weights (``--out`` .safetensors + model card .json, rewritten every
``--save-every`` epochs so a usable file exists early), a JSON-lines log beside them
(``<out stem>.train.jsonl``, one line per epoch) and a resumable checkpoint in
``--checkpoint-dir`` (default ``.cache/reid_train/<out stem>/last.pt``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from pipeline.reid.batches import TrainBatches, source_weights
from pipeline.reid.datasets import (
    ReidSplit,
    load_image_array,
    load_protocol,
    unlabelled_samples,
    with_extra_sources,
)
from pipeline.reid.models import REID_MODELS, build_reid_model
from pipeline.reid.recipe import (
    ReidTrainingWrapper,
    autocast_context,
    batch_hard_triplet,
    distill_cosine,
    lr_at,
    relational_distill,
)
from pipeline.reid.teacher import parse_teachers, teacher_targets
from pipeline.reid.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, normalize
from pipeline.reid.weights import load_backbone_weights, model_name, save_reid_weights

log = logging.getLogger(__name__)


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
    data = parser.add_argument_group("training data")
    data.add_argument(
        "--extra-train", default="",
        help="extra training folders under --data, comma-separated names or groups "
        "(detected, extra, xdomain, indomain, all; see shared/data/README.md); the test "
        "split of --protocol is unchanged")
    data.add_argument(
        "--source-balance", type=float, default=1.0,
        help="identity sampling weight n_ids(source)**(value - 1): 1 = every identity "
        "alike, 0 = every source alike")
    data.add_argument("--camera-balanced", action="store_true",
                      help="spread each identity's K images over its cameras")
    data.add_argument("--init-from", type=Path, default=None,
                      help="start from these .safetensors weights (same backbone; modules "
                      "the file lacks, such as inserted attention, keep their identity "
                      "initialisation; new identity classifiers)")
    kd = parser.add_argument_group("teachers")
    kd.add_argument("--teacher", default="",
                    help="teacher models, comma-separated FILE[@INPUT] (INPUT: a preset such "
                    "as bgr255, or JSON; see `mtmc reid eval --input`); several are "
                    "averaged. Their embeddings of every training image (plain and "
                    "mirrored) are cached under --cache-dir")
    kd.add_argument("--unlabelled", default="",
                    help="folders of unlabelled person crops (e.g. cut from footage by "
                    "`mtmc reid crops`), comma-separated: they train with the teacher's "
                    "losses only; needs --teacher")
    kd.add_argument("--unlabelled-per-batch", type=int, default=32,
                    help="unlabelled crops appended to each P x K batch")
    kd.add_argument("--distill-weight", type=float, default=1.0,
                    help="weight of 1 - cosine(projected student, teacher)")
    kd.add_argument("--relation-weight", type=float, default=10.0,
                    help="weight of the batch similarity-matrix (relational) loss")
    aug = parser.add_argument_group("augmentation")
    aug.add_argument("--jitter-p", type=float, default=0.0, help="colour jitter probability")
    aug.add_argument("--gray-p", type=float, default=0.0, help="random grayscale probability")
    aug.add_argument("--style-p", type=float, default=0.0,
                     help="per-batch style (channel mean/std) mixing probability")
    speed = parser.add_argument_group("speed")
    speed.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                       help="channels_last memory format (auto: on for CUDA)")
    speed.add_argument("--compile", action="store_true", help="torch.compile the model")
    speed.add_argument("--prefetch", choices=("auto", "on", "off"), default="auto",
                       help="prepare the next batch on a side thread (auto: on for CUDA)")



@dataclass
class _Loop:
    """What the epochs share: the model under training, its optimiser and the schedule."""

    wrapper: ReidTrainingWrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    iters: int  # batches per epoch
    total_steps: int
    warmup: int  # steps
    device: str
    amp: str
    budget_s: float  # 0: no time budget
    wall_before: float  # training seconds spent before this process (resume)
    t_start: float

    def elapsed(self) -> float:
        """Training seconds spent so far, including those before a resume."""
        return self.wall_before + time.time() - self.t_start


def _model_card(args: argparse.Namespace, split: ReidSplit, hw: tuple[int, int],
                num_classes: int, num_images: int, device: str, amp: str) -> dict:
    """The model card's fixed part: architecture, data, recipe, hardware, commit."""
    return {
        "architecture": args.model,
        "input_hw": list(hw),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "colour_order": "RGB",
        "training_data": {
            "protocol": split.name,
            "description": split.description,
            "ids": num_classes,
            "images": num_images,
            "sources": {
                name: {
                    "images": sum(1 for j in split.train_source if j == i),
                    "ids": len({s[1] for s, j in zip(split.train, split.train_source,
                                                      strict=True) if j == i}),
                }
                for i, name in enumerate(split.sources)
            },
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
        "init_from": str(args.init_from) if args.init_from else None,
        "teachers": [{"file": str(p), "input": d} for p, d in parse_teachers(args.teacher)]
        if args.teacher else [],
    }


def _save_checkpoint(path: Path, loop: _Loop, epoch: int, rng: np.random.Generator,
                     gen: torch.Generator) -> None:
    """Everything ``--resume`` needs, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp")
    torch.save(
        {
            "wrapper": loop.wrapper.state_dict(),
            "optimizer": loop.optimizer.state_dict(),
            "epoch": epoch,
            "wall_s": loop.elapsed(),
            "torch_rng": torch.get_rng_state(),
            "gen_rng": gen.get_state(),
            "np_rng": json.dumps(rng.bit_generator.state),
        },
        tmp,
    )
    os.replace(tmp, path)


def _load_checkpoint(path: Path, wrapper: nn.Module, optimizer: torch.optim.Optimizer,
                     rng: np.random.Generator, gen: torch.Generator) -> tuple[int, float]:
    """Restore a checkpoint in place; returns (epochs done, training seconds spent)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    wrapper.load_state_dict(state["wrapper"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    gen.set_state(state["gen_rng"])
    rng.bit_generator.state = json.loads(state["np_rng"])
    return int(state["epoch"]), float(state["wall_s"])


def _run_epoch(loop: _Loop, args: argparse.Namespace, epoch: int,
               batches: TrainBatches) -> tuple[dict, float, bool]:
    """One pass of P x K batches; returns (sums, last learning rate, out of time)."""
    sums = {"loss": 0.0, "ce": 0.0, "tri": 0.0, "kd": 0.0, "rel": 0.0, "correct": 0,
            "seen": 0, "images": 0}
    lr, out_of_time = args.lr, False
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=loop.iters, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
    for it, (x, y, target) in enumerate(batches.epoch(loop.iters)):
        progress = None
        if loop.budget_s > 0:
            # Warm-up is step-based; the time budget compresses only the cosine phase.
            progress = loop.elapsed() / loop.budget_s
            if progress >= 1.0:
                out_of_time = True
                break
        lr = lr_at(epoch * loop.iters + it, total=loop.total_steps, warmup=loop.warmup,
                   base=args.lr, progress=progress)
        for group in loop.optimizer.param_groups:
            group["lr"] = lr
        with autocast_context(loop.device, loop.amp):
            feats, logits = loop.wrapper(x)
        # Unlabelled crops (label -1, at the batch's end) see the teacher's losses only.
        n_lab = int(batches.num_labelled_in(len(y)))
        y_lab = y[:n_lab]
        ce = sum(
            F.cross_entropy(lg[:n_lab].float(), y_lab, label_smoothing=args.label_smoothing)
            for lg in logits.values()
        ) / len(logits)
        tri = torch.zeros((), device=loop.device)
        if args.triplet_weight > 0:
            branches = loop.wrapper.branches
            tri = sum(batch_hard_triplet(feats[k][:n_lab], y_lab, args.margin)
                      for k in branches)
            tri = tri / len(branches)
        loss = ce + args.triplet_weight * tri
        kd = rel = torch.zeros((), device=loop.device)
        if target is not None:
            joint = loop.wrapper.joint(feats)
            kd = distill_cosine(loop.wrapper.teacher_head(joint.float()), target)
            rel = relational_distill(joint, target)
            loss = loss + args.distill_weight * kd + args.relation_weight * rel
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
        head = logits.get("joint", next(iter(logits.values())))
        # Device-side sums: no host sync per step (read once per epoch).
        sums["loss"] += loss.detach() * n_lab
        sums["ce"] += ce.detach() * n_lab
        sums["tri"] += tri.detach() * n_lab
        sums["kd"] += kd.detach() * n_lab
        sums["rel"] += rel.detach() * n_lab
        sums["correct"] += (head[:n_lab].argmax(1) == y_lab).sum()
        sums["seen"] += n_lab
        sums["images"] += len(y)
        if bar is not None:
            bar.update(1)
            if it % 20 == 0:
                bar.set_postfix(loss=f"{float(sums['loss']) / sums['seen']:.3f}",
                                acc=f"{float(sums['correct']) / sums['seen']:.3f}",
                                lr=f"{lr:.2e}")
    if bar is not None:
        bar.close()
    return {k: float(v) for k, v in sums.items()}, lr, out_of_time


def _save_weights(model: nn.Module, args: argparse.Namespace, card: dict, *, epochs: int,
                  epochs_done: float, complete: bool, out_of_time: bool, wall_s: float,
                  metrics: dict) -> None:
    """Complete ``card`` with the run's state and write the weights beside it."""
    card.update(
        {
            "epochs": epochs,
            "epochs_done": epochs_done,
            "complete": complete,
            "stopped_by_time_budget": out_of_time,
            "wall_time_s": round(wall_s, 1),
            "final_train": metrics,
            "weights_name": model_name(model),
        }
    )
    model.eval()
    save_reid_weights(model, args.out, card=card)
    model.train()


def _sample_key(hw: tuple[int, int], samples: list) -> str:
    """What identifies a set of training images for the teacher cache: size, paths, bytes."""
    return repr(hw) + "".join(f"{p}:{Path(p).stat().st_size}" for p, _, _ in samples)


def train(args: argparse.Namespace) -> dict:
    """Run training as configured by ``args``; returns the final model card."""
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = args.device
    amp = args.amp if args.amp != "auto" else ("fp16" if device.startswith("cuda") else "off")

    split = load_protocol(args.protocol, args.data)
    if args.extra_train:
        split = with_extra_sources(split, args.data, args.extra_train)
    model = build_reid_model(args.model, **json.loads(args.model_config))
    if args.init_from is not None:
        load_backbone_weights(model, args.init_from)
    model.train()
    hw = tuple(model.input_hw)
    t0 = time.time()
    images = torch.from_numpy(load_image_array(split.train, hw=hw, cache_dir=args.cache_dir))
    labels = np.array([s[1] for s in split.train])
    num_classes = int(labels.max()) + 1
    log.info("%d training images, %d ids, %d sources, loaded in %.1fs", len(labels),
             num_classes, max(1, len(split.sources)), time.time() - t0)

    targets, teachers = None, parse_teachers(args.teacher) if args.teacher else []
    if teachers:
        t0 = time.time()
        targets = torch.from_numpy(teacher_targets(
            images.numpy(), teachers, sample_key=_sample_key(hw, split.train),
            cache_dir=args.cache_dir,
            threads=args.threads))
        log.info("teacher embeddings %s ready in %.1fs", tuple(targets.shape), time.time() - t0)

    unlabelled = unlabelled_targets = None
    if args.unlabelled:
        if not teachers:
            raise ValueError("--unlabelled crops train with a teacher's losses only: give "
                             "--teacher too")
        samples = unlabelled_samples([Path(f) for f in args.unlabelled.split(",") if f])
        unlabelled = torch.from_numpy(load_image_array(samples, hw=hw,
                                                       cache_dir=args.cache_dir))
        unlabelled_targets = torch.from_numpy(teacher_targets(
            unlabelled.numpy(), teachers, sample_key=_sample_key(hw, samples),
            cache_dir=args.cache_dir,
            threads=args.threads))
        log.info("%d unlabelled crops from %s, %d per batch", len(samples), args.unlabelled,
                 args.unlabelled_per_batch)

    channels_last = args.channels_last == "on" or (
        args.channels_last == "auto" and device.startswith("cuda"))
    wrapper = ReidTrainingWrapper(model=model, num_classes=num_classes,
                                  teacher_dim=0 if targets is None else targets.shape[-1]
                                  ).to(device)
    if channels_last:
        wrapper = wrapper.to(memory_format=torch.channels_last)
    batches = TrainBatches(
        images, labels, device=device, p=args.batch_p, k=args.batch_k, rng=rng, seed=args.seed,
        id_weights=source_weights(split, labels, args.source_balance),
        cameras=np.array([s[2] for s in split.train]) if args.camera_balanced else None,
        augment=AugmentConfig(pad=max(4, hw[0] // 16), erase_p=args.erase_p,
                              jitter_p=args.jitter_p, gray_p=args.gray_p,
                              style_p=args.style_p),
        channels_last=channels_last,
        prefetch=args.prefetch == "on" or (args.prefetch == "auto"
                                           and device.startswith("cuda")),
        targets=targets,
        unlabelled=unlabelled,
        unlabelled_targets=unlabelled_targets,
        unlabelled_per_batch=args.unlabelled_per_batch,
    )
    gen = batches.generator
    if args.compile:
        wrapper.model.features = torch.compile(wrapper.model.features)
    optimizer = torch.optim.AdamW(wrapper.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    iters = len(labels) // (min(args.batch_p, num_classes) * args.batch_k)
    if args.max_iters:
        iters = min(iters, args.max_iters)

    ckpt_dir = args.checkpoint_dir or Path(".cache") / "reid_train" / args.out.stem
    ckpt_path = ckpt_dir / "last.pt"
    log_path = args.out.with_name(args.out.stem + ".train.jsonl")
    start_epoch, wall_before = 0, 0.0
    if args.resume and ckpt_path.is_file():
        start_epoch, wall_before = _load_checkpoint(ckpt_path, wrapper, optimizer, rng, gen)
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    elif log_path.exists():
        log_path.unlink()

    card = _model_card(args, split, hw, num_classes, len(labels), device, amp)
    loop = _Loop(
        wrapper=wrapper,
        optimizer=optimizer,
        scaler=torch.amp.GradScaler("cuda", enabled=amp == "fp16" and device.startswith("cuda")),
        iters=iters,
        total_steps=iters * args.epochs,
        warmup=int(args.warmup_epochs * iters),
        device=device,
        amp=amp,
        budget_s=args.time_budget_min * 60.0,
        wall_before=wall_before,
        t_start=time.time(),
    )
    wrapper.train()
    metrics: dict = {}
    for epoch in range(start_epoch, args.epochs):
        t_epoch = time.time()
        sums, lr, out_of_time = _run_epoch(loop, args, epoch, batches)
        seconds = time.time() - t_epoch
        if sums["seen"] == 0:
            # The budget ran out exactly at an epoch boundary: re-save the last epoch so its
            # card says the run is over (it may have been saved mid-run as incomplete).
            if metrics:
                _save_weights(model, args, card, epochs=epoch, epochs_done=epoch,
                              complete=True, out_of_time=True, wall_s=loop.elapsed(),
                              metrics=metrics)
            break
        seen = sums["seen"]
        metrics = {
            "epoch": epoch + 1,
            "loss": sums["loss"] / seen,
            "ce": sums["ce"] / seen,
            "triplet": sums["tri"] / seen,
            "distill": sums["kd"] / seen,
            "relation": sums["rel"] / seen,
            "acc": sums["correct"] / seen,
            "lr": lr,
            "seconds": round(seconds, 1),
            "images_per_s": round(sums["images"] / seconds, 1),
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
        _save_checkpoint(ckpt_path, loop, done, rng, gen)
        if done % args.save_every == 0 or last:
            epochs_done = done if metrics["epoch_fraction"] >= 1.0 else round(
                epoch + metrics["epoch_fraction"], 3)
            _save_weights(model, args, card, epochs=done if out_of_time else args.epochs,
                          epochs_done=epochs_done, complete=last, out_of_time=out_of_time,
                          wall_s=loop.elapsed(),
                          metrics=metrics)
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
