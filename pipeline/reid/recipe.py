"""The pieces of the re-id training recipe, kept apart from the training loop.

* :class:`ReidTrainingWrapper`: identity classifiers on a model's feature branches;
* :func:`batch_hard_triplet`: the batch-hard triplet loss;
* :func:`pk_batches`: identity-balanced P x K sampling;
* :func:`lr_at`: warm-up + cosine schedule that can follow a time budget;
* :func:`autocast_context`: bf16/fp16 autocast by name.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["ReidTrainingWrapper", "autocast_context", "batch_hard_triplet", "lr_at",
           "pk_batches"]


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

