"""Which detections get an appearance embedding, and filling their rows.

:class:`EmbeddingPolicy` holds the settings (score and height floors, the schedule's
refresh period), validated once; :class:`PolicyEmbedder` applies them to every
camera of a tick with one :class:`~pipeline.reid.schedule.EmbeddingScheduler` per
camera, embeds the chosen crops of all cameras in shared batches and leaves zero rows
for the rest, which the tracker and tracklet builder read as "no appearance".

With a crop budget (``max_crops_per_frame``) a tick embeds at most that many crops per
camera frame, shared by its cameras: births first, then detections near another person,
then the stalest refreshes; a refresh put off is simply due again on the next frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipeline.reid.schedule import BIRTH, SKIP, EmbeddingScheduler
from pipeline.types import DEFAULT_FPS, Detections, Tracks, seconds_to_frames

__all__ = ["EmbeddingPolicy", "PolicyEmbedder", "embedding_stats"]


@dataclass(frozen=True)
class EmbeddingPolicy:
    """Which detections are worth embedding.

    Attributes:
        min_score: Detections below this score are not embedded (they still track by IoU).
        min_height_px: Boxes shorter than this (pixels) are not embedded (too little detail).
        refresh_s: A detection that clearly continues a track, with no other person
            near, is re-embedded only when the track's last embedding is this many
            seconds old (at least one frame); births and ambiguous detections always
            are (0 = every frame).
        max_crops_per_frame: Crop budget: at most this many crops per camera frame on
            average over a tick's frames (a 4-camera tick embeds up to 4x this many);
            None = no budget. Births are never put off, whatever the budget.
        ambiguity_iou: Overlap (IoU) with another eligible detection, or with a second
            previous track, above which a detection counts as ambiguous and is embedded
            every frame (``pipeline.reid.schedule``); below it, people walking side by
            side are refreshed like anyone else. Must stay below 0.5 (the overlap at
            which a detection clearly continues a track).

    Raises:
        ValueError: A value out of range.
    """

    min_score: float = 0.4
    min_height_px: float = 32.0
    refresh_s: float = 0.0
    max_crops_per_frame: float | None = None
    ambiguity_iou: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"reid.min_score must be in [0, 1], got {self.min_score}")
        if self.min_height_px < 0:
            raise ValueError(f"reid.min_height_px must be >= 0, got {self.min_height_px}")
        if not self.refresh_s >= 0:
            raise ValueError(f"reid.refresh_s must be >= 0 seconds, got {self.refresh_s}")
        if self.max_crops_per_frame is not None and not self.max_crops_per_frame > 0:
            raise ValueError("reid.max_crops_per_frame must be > 0 or null (no budget), got "
                             f"{self.max_crops_per_frame}")
        if not 0.0 <= self.ambiguity_iou < 0.5:
            raise ValueError(f"reid.ambiguity_iou must be in [0, 0.5), got {self.ambiguity_iou}")

    def eligible(self, detections: Detections) -> np.ndarray:
        """(N,) bool: detections good enough to embed at all (score and height)."""
        height = detections.xyxy[:, 3] - detections.xyxy[:, 1]
        return (detections.score >= self.min_score) & (height >= self.min_height_px)


class CropEmbedding(Protocol):
    """What :class:`PolicyEmbedder` needs of an embedder (``CropEmbedder`` has it)."""

    embedding_dim: int

    def embed(self, images_bgr: Sequence[np.ndarray],
              boxes_xyxy: Sequence[np.ndarray]) -> list[np.ndarray]: ...


class PolicyEmbedder:
    """Embeds the detections an :class:`EmbeddingPolicy` chooses, per camera.

    Args:
        embedder: The crop embedder (all cameras' crops go through it in shared batches).
        camera_ids: Cameras of the run (one schedule each).
        policy: The settings.
    """

    def __init__(self, *, embedder: CropEmbedding, camera_ids: Sequence[str],
                 policy: EmbeddingPolicy) -> None:
        self.embedder = embedder
        self.policy = policy
        self.schedulers = {cid: EmbeddingScheduler(ambiguity_iou=policy.ambiguity_iou)
                           for cid in camera_ids}
        for cid in camera_ids:
            self.set_fps(cid, DEFAULT_FPS)
        self.eligible = 0  # detections good enough to embed
        self.embedded = 0  # of those, embedded (the schedule skipped the rest)
        self.deferred = 0  # chosen by the schedule but put off by the crop budget

    def set_fps(self, camera_id: str, fps: float) -> None:
        """A camera's frame rate: ``refresh_s`` becomes its schedule's frame count."""
        frames = max(1, seconds_to_frames(self.policy.refresh_s, fps))
        self.schedulers[camera_id].refresh_frames = frames

    def __call__(self, camera_ids: Sequence[str], images: Sequence[np.ndarray],
                 dets: list[Detections]) -> list[Detections]:
        """The detections of one tick with embeddings: chosen rows filled, others zero."""
        ranks = []
        for cid, d in zip(camera_ids, dets, strict=True):
            eligible = self.policy.eligible(d)
            ranks.append(self.schedulers[cid].priorities(d, eligible))
            self.eligible += int(eligible.sum())
        keep = self._within_budget(ranks, len(dets))
        vectors = self.embedder.embed(images, [d.xyxy[k] for d, k in zip(dets, keep, strict=True)])
        dim = self.embedder.embedding_dim
        out = []
        for d, k, v in zip(dets, keep, vectors, strict=True):
            full = np.zeros((len(d), dim), np.float32)
            full[k] = v
            self.embedded += int(k.sum())
            out.append(Detections(xyxy=d.xyxy, score=d.score, embedding=full))
        return out

    def _within_budget(self, ranks: list[tuple[np.ndarray, np.ndarray]],
                       frames: int) -> list[np.ndarray]:
        """Per frame, the detections to embed: all chosen, or the most urgent in budget."""
        keep = [priority < SKIP for priority, _ in ranks]
        if self.policy.max_crops_per_frame is None:
            return keep
        budget = int(round(self.policy.max_crops_per_frame * frames))
        chosen = sum(int(k.sum()) for k in keep)
        if chosen <= budget:
            return keep
        # One list of (priority, -age, frame, row) over the tick; stable for equal keys.
        priority = np.concatenate([p for p, _ in ranks])
        age = np.concatenate([a for _, a in ranks])
        frame = np.concatenate([np.full(len(p), i) for i, (p, _) in enumerate(ranks)])
        row = np.concatenate([np.arange(len(p)) for p, _ in ranks])
        order = np.lexsort((row, frame, -age, priority))
        order = order[priority[order] < SKIP]
        births = int((priority == BIRTH).sum())
        take = order[: max(budget, births)]
        self.deferred += chosen - len(take)
        keep = [np.zeros(len(p), bool) for p, _ in ranks]
        for i in take.tolist():
            keep[frame[i]][row[i]] = True
        return keep

    def observe(self, camera_id: str, tracks: Tracks) -> None:
        """Feed a camera's tracker output back to its schedule."""
        self.schedulers[camera_id].observe(tracks)

    def reset(self, camera_id: str) -> None:
        """Forget a camera's tracks (it reconnected: its next detections are all new)."""
        self.schedulers[camera_id].reset()

    def counts(self) -> dict[str, int]:
        """The summary's counters as they stand (``eligible``, ``embedded``,
        ``deferred``)."""
        return {"eligible": self.eligible, "embedded": self.embedded,
                "deferred": self.deferred}

    def state(self) -> dict[str, Any]:
        """What a restarted worker needs to go on: schedules and counters (picklable)."""
        return {"schedulers": self.schedulers, "counts": self.counts()}

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from :meth:`state`."""
        self.schedulers = state["schedulers"]
        self.eligible, self.embedded, self.deferred = (
            state["counts"][k] for k in ("eligible", "embedded", "deferred"))

    def stats(self) -> dict[str, Any]:
        """Counts for the run summary."""
        budget = self.policy.max_crops_per_frame is not None
        return embedding_stats(self.eligible, self.embedded, self.deferred if budget else None)


def embedding_stats(eligible: int, embedded: int, deferred: int | None = None) -> dict[str, Any]:
    """The run summary's ``reid`` counters (``deferred_by_budget`` only with a budget)."""
    share = embedded / eligible if eligible else 0.0
    stats: dict[str, Any] = {"eligible_detections": eligible, "embedded_detections": embedded,
                             "embedded_share": round(share, 4)}
    if deferred is not None:
        stats["deferred_by_budget"] = deferred
    return stats
