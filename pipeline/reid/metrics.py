"""Re-identification ranking metrics: CMC (Rank-k) and mean average precision.

The standard exclusion rule is applied: for each query, gallery items with the
same person id **and** the same camera as the query are removed from its ranking
(they are trivially easy matches). Queries left without any true match in the
gallery are skipped and do not count towards the averages. No re-ranking.

Everything is vectorised over the (Q, G) distance matrix with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RankMetrics", "cosine_distance", "evaluate_rank"]


@dataclass(frozen=True)
class RankMetrics:
    """Result of :func:`evaluate_rank`.

    Attributes:
        cmc: (max_rank,) float64, ``cmc[k-1]`` = fraction of valid queries whose
            first true match is within the top k (Rank-k accuracy, 0..1).
        mAP: Mean of the per-query average precision over valid queries (0..1).
        ap: (Q,) float64 average precision per query; NaN for skipped queries.
        num_valid: Number of queries with at least one valid true match.
    """

    cmc: np.ndarray
    mAP: float
    ap: np.ndarray
    num_valid: int

    def rank(self, k: int) -> float:
        """Rank-k accuracy (0..1), k >= 1."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank k={k} outside 1..{len(self.cmc)}")
        return float(self.cmc[k - 1])


def cosine_distance(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """1 - cosine similarity between rows.

    Args:
        query: (Q, D) embeddings (need not be normalised).
        gallery: (G, D) embeddings.

    Returns:
        (Q, G) float64 distances in [0, 2].
    """
    q = np.asarray(query, np.float64)
    g = np.asarray(gallery, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return 1.0 - q @ g.T


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    *,
    max_rank: int = 50,
) -> RankMetrics:
    """CMC and mAP from a query x gallery distance matrix (smaller = more similar).

    Args:
        distmat: (Q, G) distances.
        q_pids, g_pids: (Q,), (G,) person ids.
        q_camids, g_camids: (Q,), (G,) camera ids.
        max_rank: Length of the returned CMC curve; ranks beyond the number of
            valid gallery items count as "matched by then" once the match is found.

    Returns:
        RankMetrics. Ties in distance are broken by gallery order (stable sort).

    Raises:
        ValueError: shapes disagree, or no query has a valid match.
    """
    distmat = np.asarray(distmat, dtype=np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    n_q, n_g = distmat.shape
    if q_pids.shape != (n_q,) or q_camids.shape != (n_q,):
        raise ValueError(
            f"query ids/cameras must be ({n_q},), got {q_pids.shape}/{q_camids.shape}"
        )
    if g_pids.shape != (n_g,) or g_camids.shape != (n_g,):
        raise ValueError(
            f"gallery ids/cameras must be ({n_g},), got {g_pids.shape}/{g_camids.shape}"
        )

    order = np.argsort(distmat, axis=1, kind="stable")
    same_pid = g_pids[order] == q_pids[:, None]
    same_cam = g_camids[order] == q_camids[:, None]
    valid = ~(same_pid & same_cam)
    hits = same_pid & valid
    num_rel = hits.sum(axis=1)
    keep = num_rel > 0
    if not keep.any():
        raise ValueError("no query has a true match in the gallery (after same-camera exclusion)")

    # Rank of each gallery item once excluded items are removed from the list.
    valid_rank = np.cumsum(valid, axis=1)  # 1-based among valid items
    big = np.iinfo(np.int64).max
    first_hit = np.where(hits, valid_rank, big).min(axis=1)  # 1-based rank of first match
    ks = np.arange(1, max_rank + 1)
    cmc = (first_hit[keep, None] <= ks[None, :]).mean(axis=0)

    cum_hits = np.cumsum(hits, axis=1)
    precision = cum_hits / np.maximum(valid_rank, 1)
    ap = np.full(n_q, np.nan)
    ap[keep] = (precision * hits).sum(axis=1)[keep] / num_rel[keep]
    return RankMetrics(cmc=cmc, mAP=float(np.nanmean(ap)), ap=ap, num_valid=int(keep.sum()))
