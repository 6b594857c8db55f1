"""The pieces of the re-id training recipe, kept apart from the training loop.

* :class:`ReidTrainingWrapper`: identity classifiers on a model's feature branches;
* :func:`batch_hard_triplet`: the batch-hard triplet loss;
* :func:`distill_cosine`, :func:`relational_distill`: losses toward a teacher's
  embeddings (direct, through the wrapper's projection head, and the batch's
  similarity matrix);
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

__all__ = ["ReidTrainingWrapper", "autocast_context", "batch_hard_triplet", "distill_cosine",
           "lr_at", "pk_batches", "relational_distill"]


class ReidTrainingWrapper(nn.Module):
    """A re-id model plus one linear identity classifier per feature branch (and a joint
    classifier on their concatenation when there are several branches).

    ``forward(x)`` returns (features dict, logits dict); logits keys are the branch names
    and ``"joint"``. With ``teacher_dim`` a linear projection head (``teacher_head``)
    maps the concatenated branch features to the teacher's dimension for
    :func:`distill_cosine`; like the classifiers it is not part of the saved model.
    """

    def __init__(self, *, model: nn.Module, num_classes: int, teacher_dim: int = 0) -> None:
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
        self.teacher_head = (nn.Linear(sum(dims.values()), teacher_dim, bias=False)
                             if teacher_dim else None)

    def joint(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """The branch features side by side, [N, sum of branch dims]."""
        return torch.cat([feats[k] for k in self.branches], 1)

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        feats = self.model.features(x)
        logits = {k: self.classifiers[k](feats[k]) for k in self.branches}
        if "joint" in self.classifiers:
            logits["joint"] = self.classifiers["joint"](self.joint(feats))
        return feats, logits



def batch_hard_triplet(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) on L2-normalised embeddings [N,D]."""
    emb = F.normalize(emb.float(), dim=1)
    dist = (2 - 2 * emb @ emb.t()).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    hardest_pos = (dist * same).max(1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def distill_cosine(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean (1 - cosine) between projected student features [N, D] and teacher
    embeddings [N, D]."""
    return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=1)).mean()


def relational_distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Relational distillation: mean squared difference between the batch's cosine
    similarity matrices (off the diagonal) of student [N, Ds] and teacher [N, Dt].

    Only the geometry of the batch is matched, so the dimensions may differ and the
    student's own embedding (not a projection of it) is what learns the teacher's
    neighbourhoods.
    """
    s = F.normalize(student.float(), dim=1)
    t = F.normalize(teacher.float(), dim=1)
    diff = (s @ s.t() - t @ t.t()).pow(2)
    n = len(s)
    return (diff.sum() - diff.diagonal().sum()) / max(1, n * (n - 1))


def pk_batches(
    labels: np.ndarray,
    p: int,
    k: int,
    rng: np.random.Generator,
    *,
    id_weights: np.ndarray | None = None,
    cameras: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Identity-balanced batches: P identities x K images each (with replacement only
    when an identity has fewer than K images). Yields len(labels) // (P*K) batches.

    Args:
        labels: (N,) int labels 0..C-1.
        p, k: identities per batch, images per identity.
        rng: numpy generator (all randomness).
        id_weights: optional (C,) non-negative weights: identities are drawn (without
            replacement within a batch) with probability proportional to them, e.g. to
            keep small training sources from being drowned by large ones.
        cameras: optional (N,) camera ids: an identity's K images are then spread over
            its cameras (cameras taken in a random order, round robin), so that a batch
            holds cross-camera positives whenever the identity has them.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    ids, starts = np.unique(labels[order], return_index=True)
    groups = np.split(order, starts[1:])
    by_cam: list[list[np.ndarray]] | None = None
    if cameras is not None:
        cameras = np.asarray(cameras)
        by_cam = [[g[cameras[g] == c] for c in np.unique(cameras[g])] for g in groups]
    prob = None
    if id_weights is not None:
        w = np.asarray(id_weights, np.float64)[ids]
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("id_weights must be non-negative with a positive sum")
        prob = w / w.sum()
    p = min(p, int((prob > 0).sum()) if prob is not None else len(ids))
    for _ in range(max(1, len(labels) // (p * k))):
        chosen = rng.choice(len(ids), size=p, replace=False, p=prob)
        batch = []
        for c in chosen:
            if by_cam is not None and len(by_cam[c]) > 1:
                batch.append(_spread_over_cameras(by_cam[c], k, rng))
            else:
                g = groups[c]
                batch.append(rng.choice(g, size=k, replace=len(g) < k))
        yield np.concatenate(batch)


def _spread_over_cameras(per_cam: list[np.ndarray], k: int,
                         rng: np.random.Generator) -> np.ndarray:
    """K sample indices taken round robin over cameras in a random order."""
    cams = rng.permutation(len(per_cam))
    counts = np.bincount(np.arange(k) % len(cams), minlength=len(cams))
    picks = [rng.choice(per_cam[c], size=n, replace=len(per_cam[c]) < n)
             for c, n in zip(cams, counts, strict=True) if n > 0]
    return np.concatenate(picks)


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

