"""ByteTrack-class per-camera tracker with optional appearance.

One instance tracks one camera. It is a pure object: ``update(detections) ->
Tracks`` once per frame, ``reset()`` between sources; no I/O, no models. Embeddings,
when present, arrive on the ``Detections``.

Association per frame (ByteTrack, with appearance in the first stage):

1. high-score detections vs confirmed tracked + lost tracks: score-fused IoU, fused
   with appearance (``costs.fuse_motion_appearance``) when embeddings are present. A
   *lost* track takes a box only when their appearances agree (cosine distance <=
   ``appearance_thresh``) wherever both carry a vector: its prediction drifts while it
   is unseen, and overlap alone hands it the next person who walks into that place;
2. low-score detections vs the still unmatched tracks: IoU only (weak detections are
   often occluded people whose crops would poison the appearance). With
   ``low_extends_lost`` (default) lost tracks take part too, so a partly hidden person
   whose score dropped re-acquires their track instead of waiting for a strong box;
   the IoU gate (``second_match_thresh``) keeps this to boxes on the prediction, and
   low-score boxes never start tracks. Weak boxes carry a track for at most
   ``max_weak_frames`` after its last strong one: an occlusion ends, while a detector
   that keeps firing weakly on a static thing where a person left (a bin, a sign) would
   otherwise hold that person's track there for the rest of the video;
3. unconfirmed (tentative) tracks vs the remaining high-score detections;
4. new tentative tracks from the remaining detections scoring >= ``new_track_thresh``;
5. tracks unmatched for more than ``max_lost_frames`` frames are removed.

The Kalman filter's measurement noise follows the detector (``adaptive_noise``): the
jitter of strong boxes matched in consecutive frames is measured as the tracker runs
(``pipeline.tracking.noise``), so gt-exact boxes are followed exactly while a jittery
detector's boxes are averaged over more frames, for prediction and for the reported
box (``output_box``).

Track ids are assigned when a track is confirmed, from a counter owned by the
instance, so two cameras never share ids state and the ids a camera outputs are
1, 2, 3, ... without gaps.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from pipeline.geometry import iou_matrix, linear_assignment, xyah_to_xyxy, xyxy_to_xyah
from pipeline.tracking.costs import (
    FUSION_MODES,
    embedding_distance,
    fuse_motion_appearance,
    fuse_score,
    iou_distance,
)
from pipeline.tracking.kalman import CHI2_95, BoxKalmanFilter, squared_mahalanobis
from pipeline.tracking.noise import BoxNoiseEstimator
from pipeline.types import Detections, Tracks

__all__ = ["TrackState", "ByteTracker", "TRACKERS", "build_tracker", "OUTPUT_BOXES"]

# What a matched track reports: the Kalman filter's corrected box, or the raw detection.
OUTPUT_BOXES = ("filtered", "detection")


class TrackState(Enum):
    TENTATIVE = 0  # not yet confirmed; removed on its first miss
    TRACKED = 1
    LOST = 2


class _Track:
    """Internal per-track record (never leaves the tracker)."""

    __slots__ = ("kf", "state", "track_id", "hits", "last_frame", "last_strong", "start_frame",
                 "embedding", "recent")

    def __init__(self, xyah: np.ndarray, frame: int, embedding: np.ndarray | None) -> None:
        self.kf = BoxKalmanFilter(xyah=xyah)
        self.state = TrackState.TENTATIVE
        self.track_id = 0
        self.hits = 1
        self.last_frame = frame
        self.last_strong = frame  # last frame a box >= high_thresh (or the birth) was taken
        self.start_frame = frame
        # xyah of the last (up to four) strong boxes matched in consecutive frames.
        self.recent: list[np.ndarray] = []
        self.embedding = None
        if embedding is not None:
            self.update_embedding(embedding, 0.0)

    def update_embedding(self, embedding: np.ndarray, alpha: float) -> None:
        # An all-zero row means "this detection was not embedded": no evidence.
        if not np.any(embedding):
            return
        if self.embedding is None or self.embedding.shape != embedding.shape:
            self.embedding = embedding.astype(np.float32, copy=True)
            return
        e = alpha * self.embedding + (1.0 - alpha) * embedding
        self.embedding = e / max(float(np.linalg.norm(e)), 1e-12)


class ByteTracker:
    """ByteTrack two-stage association with an appearance-aware first stage.

    Args:
        high_thresh: Detections scoring >= this enter the first association.
        low_thresh: Detections scoring in [low_thresh, high_thresh) enter the second.
        new_track_thresh: Unmatched high detections scoring >= this start a track.
        match_thresh: Max fused cost accepted in the first association.
        second_match_thresh: Max ``1 - IoU`` accepted for low-score detections.
        unconfirmed_match_thresh: Max cost accepted for tentative tracks.
        max_lost_frames: Frames a lost track is kept for re-acquisition.
        min_hits: Consecutive matches that confirm a track (1 = confirm at birth).
        activate_first_frame: Confirm tracks born on the very first frame at once
            (a video that starts mid-scene has people on it already).
        min_iou: Overlap for a pair to be allowed on motion alone (first stage).
        appearance_weight: Weight of appearance in the fused first-stage cost.
        appearance_thresh: Cosine distance under which a pair looks alike; pairs
            without overlap are allowed only when inside the Kalman gate and alike.
        fusion: "weighted" or "min", see ``costs.fuse_motion_appearance``.
        ema_alpha: Momentum of a track's appearance (``e = a * e + (1 - a) * new``).
        duplicate_iou: A lost track overlapping a tracked one above this is dropped.
        score_scale: The score the detector gives a certain detection. Scores are
            divided by it (and clipped to [0, 1]) before every threshold and the score
            fusion, so detections replayed from another detector (e.g. MOT15's ACF,
            -0.5 ... 139) track like probabilities once their scale is declared; the
            output keeps the detector's own scores. 1.0 = scores are probabilities.
        low_extends_lost: Let low-score detections re-acquire lost tracks (stage 2),
            not only extend tracked ones.
        adaptive_noise: Measure the detector's box jitter from the tracks (second
            differences of strong boxes in consecutive frames,
            ``pipeline.tracking.noise``) and use it, times ``noise_gain``, as the Kalman
            filter's measurement noise, instead of a fixed 1/20 of the box height.
            Exact boxes are then followed exactly and jittery ones smoothed as much
            as they need (docs/BENCHMARKS.md §3d).
        noise_gain: Factor on the measured jitter std. Above 1 because a detector's
            errors persist over frames (a box cut off by an occluder stays cut off),
            which frame-to-frame statistics do not see. Measured (docs/BENCHMARKS.md
            §3d): 1 and 2 lose PETS09 motion-only IDF1 against the fixed model, 3
            keeps it and leads on the MOT17 noise study, 4 loses PETS09 with re-id.
        max_weak_frames: Frames after a track's last strong (>= ``high_thresh``) box
            during which low-score boxes may still extend or re-acquire it (stage 2).
            Measured on PETS09 (docs/BENCHMARKS.md §3e): beyond 30 frames, 5 low-score
            rows hit a person and 153 did not (a 280-frame ghost held by a background
            box scoring 0.1-0.16). ``None`` = no limit (ByteTrack).
        output_box: "filtered" (default) reports the filter's corrected box, the
            ByteTrack/BoT-SORT choice; "detection" the matched detection unchanged.

    The score thresholds (0.4 / 0.1 / 0.5) come from ``benchmarks/tracker_thresholds.py``
    (PETS09 with the real detector, HA-CNN and motion only) and the MOT17 noise study
    (``benchmarks/noise_study.py --ours-variants``): against the earlier 0.6 / 0.7 they
    keep partly hidden people, whose detector scores drop (docs/BENCHMARKS.md §3).
    """

    def __init__(
        self,
        *,
        high_thresh: float = 0.4,
        low_thresh: float = 0.1,
        new_track_thresh: float = 0.5,
        match_thresh: float = 0.8,
        second_match_thresh: float = 0.5,
        unconfirmed_match_thresh: float = 0.7,
        max_lost_frames: int = 30,
        min_hits: int = 2,
        activate_first_frame: bool = True,
        min_iou: float = 0.1,
        appearance_weight: float = 0.5,
        appearance_thresh: float = 0.25,
        fusion: str = "weighted",
        ema_alpha: float = 0.9,
        duplicate_iou: float = 0.85,
        score_scale: float = 1.0,
        low_extends_lost: bool = True,
        adaptive_noise: bool = True,
        noise_gain: float = 3.0,
        output_box: str = "filtered",
        max_weak_frames: int | None = 30,
    ) -> None:
        if not 0.0 <= low_thresh <= high_thresh <= 1.0:
            raise ValueError(
                f"need 0 <= low_thresh <= high_thresh <= 1, got {low_thresh}, {high_thresh}"
            )
        if fusion not in FUSION_MODES:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSION_MODES}")
        if not score_scale > 0 or not np.isfinite(score_scale):
            raise ValueError(
                f"score_scale must be a positive number (the score your detector gives a "
                f"certain detection, 1.0 for probabilities), got {score_scale}"
            )
        if output_box not in OUTPUT_BOXES:
            raise ValueError(f"unknown output_box {output_box!r}; choose one of {OUTPUT_BOXES}")
        if not noise_gain > 0 or not np.isfinite(noise_gain):
            raise ValueError(f"noise_gain must be a positive number, got {noise_gain}")
        if min_hits < 1 or max_lost_frames < 0:
            raise ValueError("min_hits must be >= 1 and max_lost_frames >= 0")
        if max_weak_frames is not None and max_weak_frames < 0:
            raise ValueError(f"max_weak_frames must be >= 0 or None, got {max_weak_frames}")
        self.high_thresh = float(high_thresh)
        self.low_thresh = float(low_thresh)
        self.new_track_thresh = float(new_track_thresh)
        self.match_thresh = float(match_thresh)
        self.second_match_thresh = float(second_match_thresh)
        self.unconfirmed_match_thresh = float(unconfirmed_match_thresh)
        self.max_lost_frames = int(max_lost_frames)
        self.min_hits = int(min_hits)
        self.activate_first_frame = bool(activate_first_frame)
        self.min_iou = float(min_iou)
        self.appearance_weight = float(appearance_weight)
        self.appearance_thresh = float(appearance_thresh)
        self.fusion = fusion
        self.ema_alpha = float(ema_alpha)
        self.duplicate_iou = float(duplicate_iou)
        self.score_scale = float(score_scale)
        self.low_extends_lost = bool(low_extends_lost)
        self.adaptive_noise = bool(adaptive_noise)
        self.noise_gain = float(noise_gain)
        self.output_box = output_box
        self.max_weak_frames = None if max_weak_frames is None else int(max_weak_frames)
        self._noise = BoxNoiseEstimator()
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart ids at 1."""
        self._tracks: list[_Track] = []
        self._frame = 0
        self._next_id = 1
        self._noise.reset()
        self._jitter: list[np.ndarray] = []

    @property
    def frame_count(self) -> int:
        """Number of ``update`` calls since construction or ``reset``."""
        return self._frame

    @property
    def num_tracks(self) -> int:
        """Tracks currently held (tentative, tracked and lost)."""
        return len(self._tracks)

    # -- helpers -------------------------------------------------------------------

    def _confirm(self, track: _Track) -> None:
        track.state = TrackState.TRACKED
        if track.track_id == 0:
            track.track_id = self._next_id
            self._next_id += 1

    @property
    def measurement_noise(self) -> np.ndarray | None:
        """(4,) box noise std the filter uses now (cx, cy, h relative to the height,
        aspect absolute): the detector's measured jitter x ``noise_gain``; None while
        the fixed model is in use (``adaptive_noise`` off, or too few samples yet)."""
        if not self.adaptive_noise or not self._noise.ready:
            return None
        return self._noise.std * self.noise_gain

    def _apply(self, track: _Track, xyah: np.ndarray, emb: np.ndarray | None,
               *, strong: bool = False) -> None:
        if not strong:
            track.recent = []
        elif track.last_frame == self._frame - 1:
            track.recent = [*track.recent[-3:], xyah]
        else:
            track.recent = [xyah]
        if len(track.recent) == 4:
            self._jitter.append(np.stack(track.recent))
        if strong:
            track.last_strong = self._frame
        track.kf.update(xyah, noise_std=self.measurement_noise)
        track.last_frame = self._frame
        if emb is not None:
            track.update_embedding(emb, self.ema_alpha)

    @staticmethod
    def _boxes(tracks: list[_Track]) -> np.ndarray:
        if not tracks:
            return np.zeros((0, 4), np.float32)
        return xyah_to_xyxy(np.stack([t.kf.mean[:4] for t in tracks]))

    def _first_stage_cost(
        self, pool: list[_Track], dets: Detections, det_xyah: np.ndarray
    ) -> np.ndarray:
        iou = iou_matrix(self._boxes(pool), dets.xyxy)
        motion = fuse_score(1.0 - iou, dets.score)
        have_emb = [t.embedding is not None for t in pool]
        if not dets.has_embedding or not any(have_emb):
            return motion
        dim = dets.embedding.shape[1]
        track_emb = np.zeros((len(pool), dim), np.float32)
        for i, t in enumerate(pool):
            if t.embedding is not None and t.embedding.shape[0] == dim:
                track_emb[i] = t.embedding
        app = embedding_distance(track_emb, dets.embedding)
        # A pair where either side has no vector (track never embedded, detection not
        # embedded = zero row) is judged on motion alone.
        no_appearance = ~np.array(have_emb)[:, None] | ~np.any(dets.embedding, axis=1)[None, :]
        projected = [t.kf.project() for t in pool]
        d2 = squared_mahalanobis(
            np.stack([m for m, _ in projected]), np.stack([c for _, c in projected]), det_xyah
        )
        fused = fuse_motion_appearance(
            motion,
            app,
            iou=iou,
            squared_mahalanobis=d2,
            min_iou=self.min_iou,
            gate_threshold=CHI2_95[4],
            appearance_weight=self.appearance_weight,
            appearance_thresh=self.appearance_thresh,
            mode=self.fusion,
        )
        motion_only = np.where(iou >= self.min_iou, motion, np.inf)
        cost = np.where(no_appearance, motion_only, fused)
        # Re-acquisition: a lost track takes a box only when its appearance agrees too.
        lost = np.array([t.state is TrackState.LOST for t in pool])[:, None]
        disagree = ~no_appearance & (np.clip(app, 0.0, 1.0) > self.appearance_thresh)
        return np.where(lost & disagree, np.inf, cost).astype(np.float32)

    def _veto_unlike_lost(self, cost: np.ndarray, tracks: list[_Track],
                          det_emb: np.ndarray) -> np.ndarray:
        """``cost`` with ``inf`` where a lost track and a detection both carry a
        vector and the two disagree (cosine distance > ``appearance_thresh``)."""
        lost = [i for i, t in enumerate(tracks) if t.state is TrackState.LOST
                and t.embedding is not None and t.embedding.shape[0] == det_emb.shape[1]]
        if not lost or det_emb.shape[0] == 0:
            return cost
        app = embedding_distance(np.stack([tracks[i].embedding for i in lost]), det_emb)
        unlike = (app > self.appearance_thresh) & np.any(det_emb, axis=1)[None, :]
        cost = cost.copy()
        cost[lost] = np.where(unlike, np.inf, cost[lost])
        return cost

    # -- the frame step --------------------------------------------------------------

    def update(self, detections: Detections) -> Tracks:
        """Advance one frame.

        Args:
            detections: This frame's detections (xyxy pixels, scores, optional
                L2-normalised embeddings; (N, 0) embeddings = plain ByteTrack).

        Returns:
            The confirmed tracks matched in this frame, sorted by id; ``xyxy`` is the
            filtered box (or the detection's, ``output_box="detection"``), ``score``
            the matched detection's, ``det_index`` its row in ``detections``.
        """
        self._frame += 1
        frame = self._frame
        raw = detections
        if self.score_scale != 1.0:
            detections = Detections(
                xyxy=raw.xyxy, score=np.clip(raw.score / self.score_scale, 0.0, 1.0),
                embedding=raw.embedding)
        det_xyah = xyxy_to_xyah(detections.xyxy)
        emb = detections.embedding if detections.has_embedding else None
        matched: dict[int, _Track] = {}  # detection row -> track

        for t in self._tracks:
            t.kf.predict(freeze_height_velocity=t.state is TrackState.LOST)

        tentative = [t for t in self._tracks if t.state is TrackState.TENTATIVE]
        pool = [t for t in self._tracks if t.state is not TrackState.TENTATIVE]
        score = detections.score
        high = np.flatnonzero(score >= self.high_thresh)
        low = np.flatnonzero((score >= self.low_thresh) & (score < self.high_thresh))

        # Stage 1: high detections vs confirmed (tracked + lost) tracks.
        cost = self._first_stage_cost(pool, detections[high], det_xyah[high])
        pairs, rest_t, rest_d = linear_assignment(cost, self.match_thresh)
        for i, j in pairs:
            d = int(high[j])
            self._apply(pool[i], det_xyah[d], None if emb is None else emb[d], strong=True)
            pool[i].state = TrackState.TRACKED
            matched[d] = pool[i]
        high = high[rest_d]

        # Stage 2: low detections vs the unmatched tracks (tracked; lost too with
        # low_extends_lost), IoU only; a lost track still refuses a box that carries a
        # vector unlike its own (the rule of stage 1).
        remaining = [pool[i] for i in rest_t if pool[i].state is TrackState.TRACKED
                     or self.low_extends_lost]
        cost = iou_distance(self._boxes(remaining), detections.xyxy[low])
        if self.max_weak_frames is not None:
            stale = [frame - t.last_strong > self.max_weak_frames for t in remaining]
            cost[np.array(stale, bool)] = np.inf
        if emb is not None:
            cost = self._veto_unlike_lost(cost, remaining, emb[low])
        pairs, rest_t2, _ = linear_assignment(cost, self.second_match_thresh)
        for i, j in pairs:
            d = int(low[j])
            self._apply(remaining[i], det_xyah[d], None)  # weak crops: keep appearance
            remaining[i].state = TrackState.TRACKED
            matched[d] = remaining[i]
        for i in rest_t2:
            remaining[i].state = TrackState.LOST

        # Stage 3: tentative tracks vs the remaining high detections.
        cost = fuse_score(iou_distance(self._boxes(tentative), detections.xyxy[high]),
                          score[high])
        pairs, rest_t3, rest_d3 = linear_assignment(cost, self.unconfirmed_match_thresh)
        removed: set[int] = {id(tentative[i]) for i in rest_t3}
        for i, j in pairs:
            t, d = tentative[i], int(high[j])
            self._apply(t, det_xyah[d], None if emb is None else emb[d])
            t.last_strong = frame
            t.hits += 1
            if t.hits >= self.min_hits:
                self._confirm(t)
            matched[d] = t
        high = high[rest_d3]

        # Stage 4: births.
        born: list[_Track] = []
        for d in high[score[high] >= self.new_track_thresh]:
            d = int(d)
            t = _Track(det_xyah[d], frame, None if emb is None else emb[d].copy())
            if self.min_hits <= 1 or (frame == 1 and self.activate_first_frame):
                self._confirm(t)
            born.append(t)
            matched[d] = t

        # Stage 5: housekeeping; the detector's jitter estimate takes this frame's
        # samples (used from the next frame on).
        if self._jitter:
            self._noise.observe(np.stack(self._jitter))
            self._noise.refresh()
            self._jitter.clear()
        kept = [
            t
            for t in self._tracks
            if id(t) not in removed
            and not (t.state is TrackState.LOST and frame - t.last_frame > self.max_lost_frames)
        ]
        self._tracks = self._drop_duplicate_lost(kept) + born
        return self._output(raw, matched)

    def _drop_duplicate_lost(self, tracks: list[_Track]) -> list[_Track]:
        """Drop lost tracks whose prediction sits on a tracked one: they are stale
        copies and would otherwise compete for that person's next detection."""
        lost = [t for t in tracks if t.state is TrackState.LOST]
        active = [t for t in tracks if t.state is TrackState.TRACKED]
        if not lost or not active:
            return tracks
        overlap = iou_matrix(self._boxes(lost), self._boxes(active)).max(axis=1)
        stale = {id(t) for t, o in zip(lost, overlap, strict=True) if o > self.duplicate_iou}
        return [t for t in tracks if id(t) not in stale]

    def _output(self, detections: Detections, matched: dict[int, _Track]) -> Tracks:
        rows = sorted(
            (t.track_id, d) for d, t in matched.items() if t.state is TrackState.TRACKED
        )
        if not rows:
            return Tracks.empty()
        ids = np.array([r[0] for r in rows], np.int64)
        det_index = np.array([r[1] for r in rows], np.int64)
        xyxy = detections.xyxy[det_index]
        if self.output_box == "filtered":
            # The filter's corrected box: the detection itself for a newborn track or
            # exact boxes, the detector's jitter averaged out otherwise.
            xyxy = self._boxes([matched[int(d)] for d in det_index]).astype(xyxy.dtype)
        return Tracks(
            track_id=ids,
            xyxy=xyxy,
            score=detections.score[det_index],
            det_index=det_index,
            embedding=detections.embedding[det_index],
        )


TRACKERS: dict[str, type[ByteTracker]] = {"bytetrack": ByteTracker}


def build_tracker(name: str, **kwargs: object) -> ByteTracker:
    """Construct a registered tracker by name with keyword arguments.

    Raises:
        KeyError: ``name`` is not in ``TRACKERS`` (the message lists the choices).
    """
    try:
        cls = TRACKERS[name]
    except KeyError:
        raise KeyError(
            f"unknown tracker {name!r}; choose one of {sorted(TRACKERS)}"
        ) from None
    return cls(**kwargs)  # type: ignore[arg-type]
