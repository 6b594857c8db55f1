"""Batch-norm statistics re-estimated on a target camera's crops (``mtmc reid adapt-bn``).

A re-id model's BatchNorm layers normalise with the activation statistics of its
training cameras; on another site's cameras (lighting, colour, resolution) those
statistics are off. Re-estimating them on unlabelled crops of the target cameras
(AdaBN, Li et al. 2016) changes no learnt weight, needs no label, and takes seconds on
a CPU. The crops come from image folders or from runs of the pipeline (each tracklet's
best crop in ``run.sqlite``).
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.reid.datasets import IMAGE_SUFFIXES
from pipeline.reid.embedder import preprocess_crops

__all__ = ["adapt_bn", "add_arguments", "main", "read_crops"]

log = logging.getLogger(__name__)

@torch.no_grad()
def adapt_bn(model: nn.Module, crops: Sequence[np.ndarray], *, batch_size: int = 64) -> int:
    """Replace the running statistics of every BatchNorm of ``model`` by those of its
    inputs on ``crops`` (equal-weight average over batches); weights are untouched.

    Args:
        model: A REID_MODELS model (its ``input_hw`` sets the crop size).
        crops: BGR uint8 person crops of the target cameras.
        batch_size: Crops per forward pass.

    Returns:
        The number of BatchNorm layers re-estimated. The model is left in eval mode.

    Raises:
        ValueError: fewer than 16 crops.
    """
    if len(crops) < 16:
        raise ValueError(f"re-estimating batch-norm statistics needs at least 16 crops, got "
                         f"{len(crops)}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    try:
        order = np.random.default_rng(0).permutation(len(crops))
        for start in range(0, len(crops), batch_size):
            part = [crops[i] for i in order[start:start + batch_size]]
            if len(part) < 2:
                continue
            model(torch.from_numpy(preprocess_crops(part, tuple(model.input_hw))))
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.eval()
    return len(norms)


def read_crops(sources: Sequence[Path]) -> list[np.ndarray]:
    """BGR crops from image folders (recursively) and run folders (``run.sqlite``).

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: a source holds no crop.
    """
    crops: list[np.ndarray] = []
    for source in map(Path, sources):
        if not source.exists():
            raise FileNotFoundError(f"crop source not found: {source}")
        found: list[np.ndarray] = []
        store = source / "run.sqlite" if source.is_dir() else source
        if store.suffix == ".sqlite" and store.is_file():
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
                for (blob,) in db.execute("SELECT crop_jpeg FROM tracklets "
                                          "WHERE crop_jpeg IS NOT NULL"):
                    image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
                    if image is not None:
                        found.append(image)
        else:
            for path in sorted(source.rglob("*") if source.is_dir() else [source]):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                    if image is not None:
                        found.append(image)
        if not found:
            raise ValueError(f"no crops in {source} (expected image files, or a run folder "
                             "with run.sqlite)")
        crops += found
    return crops


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mtmc reid adapt-bn`` options to ``parser``."""
    parser.add_argument("--weights", type=Path, required=True, help="our .safetensors file")
    parser.add_argument("--crops", type=Path, nargs="+", required=True,
                        help="image folders and/or run folders (their run.sqlite crops)")
    parser.add_argument("--out", type=Path, required=True, help="adapted .safetensors path")
    parser.add_argument("--threads", type=int, default=2)


def main(args: argparse.Namespace) -> int:
    """Run ``mtmc reid adapt-bn``; returns the exit code."""
    from pipeline.reid.weights import load_reid_model, save_reid_weights

    torch.set_num_threads(max(1, args.threads))
    crops = read_crops(args.crops)
    model, card = load_reid_model(args.weights)
    layers = adapt_bn(model, crops)
    card = {**card, "adapted_bn": {"from": str(args.weights), "crops": len(crops),
                                   "sources": [str(s) for s in args.crops], "layers": layers}}
    card.pop("model", None)
    card.pop("config", None)
    save_reid_weights(model, args.out, card=card)
    print(f"wrote {args.out}: {layers} batch-norm layers re-estimated on {len(crops)} crops")
    return 0
