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
   ``max_weak_s`` after its last strong one: an occlusion ends, while a detector
   that keeps firing weakly on a static thing where a person left (a bin, a sign) would
   otherwise hold that person's track there for the rest of the video;
3. unconfirmed (tentative) tracks vs the remaining high-score detections;
4. new tentative tracks from the remaining detections scoring >= ``new_track_thresh``;
5. tracks unmatched for more than ``max_lost_s`` seconds are removed.

Durations are in seconds: the tracker turns them into frame counts at its camera's
frame rate (``fps``, given at construction or by ``set_fps`` once the source is open).

The Kalman filter's measurement noise follows the detector (``adaptive_noise``): the
jitter of strong boxes matched in consecutive frames is measured as the tracker runs
(``pipeline.tracking.noise``), so gt-exact boxes are followed exactly while a jittery
detector's boxes are averaged over more frames, for prediction and for the reported
box (``output_box``). The same measurement widens stage 1's gate (``noise_gate``): a
correct pair of a jittery detector overlaps less than one of exact boxes.

Track ids are assigned when a track is confirmed, from a counter owned by the
instance, so two cameras never share ids state and the ids a camera outputs are
1, 2, 3, ... without gaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import ClassVar, Protocol

import numpy as np

from pipeline.geometry import iou_matrix, linear_assignment, xyah_to_xyxy, xyxy_to_xyah
from pipeline.tracking.costs import (
    embedding_distance,
    fuse_motion_appearance,
    fuse_score,
    iou_distance,
)
from pipeline.tracking.kalman import CHI2_95, BoxKalmanFilter, squared_mahalanobis, warp_xyah
from pipeline.tracking.noise import BoxNoiseEstimator, one_sigma_iou
from pipeline.tracking.options import OUTPUT_BOXES, TrackerOptions
from pipeline.tracking.scores import ScoreAdapter
from pipeline.types import DEFAULT_FPS, Detections, Tracks, seconds_to_frames

__all__ = ["TrackState", "Tracker", "ByteTracker", "TRACKERS", "OUTPUT_BOXES"]


class Tracker(Protocol):
    """What the cameras' executor needs of a per-camera tracker.

    ``options_type`` is the frozen options record its constructor takes (the run
    config's ``tracker`` section becomes one, checked once when the run is built).
    """

    options_type: ClassVar[type]

    def update(self, detections: Detections) -> Tracks:
        """Advance one frame; the confirmed tracks matched in it."""
        ...

    def set_fps(self, fps: float) -> None:
        """The camera's frame rate: durations in the options become frame counts."""
        ...

    def compensate(self, warp: np.ndarray) -> None:
        """The camera moved since the last frame: (2, 3) affine map of its pixels."""
        ...

    def coast(self) -> Tracks:
        """Advance one frame the detector skipped (``detector.every``): the tracks'
        predictions move on; the tracks matched at the last update, at their
        predicted boxes (``det_index`` -1)."""
        ...

    def reset(self) -> None:
        """Forget every track and restart ids (a new source)."""
        ...

    def end_tracks(self) -> None:
        """End every open track, keeping the id counter (a camera back from an outage:
        its next people get new ids)."""
        ...


class TrackState(Enum):
    TENTATIVE = 0  # not yet confirmed; removed on its first miss
    TRACKED = 1
    LOST = 2


class _Track:
    """Internal per-track record (never leaves the tracker)."""

    __slots__ = ("kf", "state", "track_id", "hits", "last_frame", "last_strong", "start_frame",
                 "embedding", "recent", "score", "weak")

    def __init__(self, xyah: np.ndarray, frame: int, embedding: np.ndarray | None) -> None:
        self.kf = BoxKalmanFilter(xyah=xyah)
        self.state = TrackState.TENTATIVE
        self.track_id = 0
        self.hits = 1
        self.last_frame = frame
        self.last_strong = frame  # last frame a box >= high_thresh (or the birth) was taken
        self.start_frame = frame
        self.score = 0.0  # the detector's score of the last box it reported
        self.weak = False  # born on probation (``weak_birth_thresh``)
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


@dataclass(eq=False)
class _FrameStep:
    """One ``update``'s detections as the stages share them.

    ``high`` shrinks as stages take high-score detections; ``matched`` maps a detection
    row to the track that took it.
    """

    detections: Detections  # scores divided by score_scale
    xyah: np.ndarray
    embedding: np.ndarray | None
    high: np.ndarray
    low: np.ndarray
    matched: dict[int, _Track] = field(default_factory=dict)

    def vector(self, row: int) -> np.ndarray | None:
        return None if self.embedding is None else self.embedding[row]


class ByteTracker:
    """ByteTrack two-stage association with an appearance-aware first stage.

    Args:
        options: How it associates, confirms and ends tracks (``TrackerOptions``; the
            defaults when None).
        fps: The camera's frame rate (``DEFAULT_FPS`` when None); ``set_fps`` changes it.
        **overrides: ``TrackerOptions`` fields replacing those of ``options``
            (``ByteTracker(min_hits=1)``).

    Raises:
        ValueError: an unknown option name or a value out of range.
    """

    options_type: ClassVar[type] = TrackerOptions

    def __init__(self, options: TrackerOptions | None = None, /, *, fps: float | None = None,
                 **overrides: object) -> None:
        base = options if options is not None else TrackerOptions()
        try:
            self.options = replace(base, **overrides) if overrides else base
        except TypeError:
            TrackerOptions.from_params(overrides)  # raises, naming the unknown key
            raise
        self._noise = BoxNoiseEstimator()
        self.set_fps(DEFAULT_FPS if fps is None else fps)
        self.reset()

    def set_fps(self, fps: float) -> None:
        """Take the camera's frame rate: the options' durations become frame counts."""
        if not fps > 0 or not np.isfinite(fps):
            raise ValueError(f"fps must be a positive number, got {fps}")
        o = self.options
        self.fps = float(fps)
        self.max_lost_frames = seconds_to_frames(o.max_lost_s, fps)
        self.max_weak_frames = (None if o.max_weak_s is None
                                else seconds_to_frames(o.max_weak_s, fps))
        self.confirm_hits = o.confirm_hits(fps)
        self.weak_confirm_hits = o.weak_confirm_hits(fps)
        self._scores = None if o.adaptive_scores is False else ScoreAdapter(
            window=max(1, seconds_to_frames(o.score_window_s, fps)),
            every=max(1, seconds_to_frames(1.0, fps)),  # the window read once a second
            auto_new_track=o.new_track_thresh if o.adaptive_scores == "auto" else None)

    def compensate(self, warp: np.ndarray) -> None:
        """The camera moved between the last frame and the next: carry every track's
        state along (``warp``: (2, 3) affine map from the last frame's pixels to the
        next's, ``pipeline.tracking.camera_motion``). Call before ``update``."""
        for t in self._tracks:
            t.kf.warp(warp)
            # The jitter estimate's recent boxes move too (else the camera's motion
            # would be counted as the detector's noise).
            t.recent = [warp_xyah(r, warp) for r in t.recent]

    def describe(self) -> dict[str, object]:
        """The frame rate, the frame counts and the score thresholds in use, the last on
        the detector's scale (for the run summary)."""
        o = self.options
        to_detector = self._scores.to_detector if self._scores is not None else float
        return {"fps": self.fps, "max_lost_frames": self.max_lost_frames,
                "max_weak_frames": self.max_weak_frames, "confirm_hits": self.confirm_hits,
                "score_thresholds": {
                    name: round(to_detector(getattr(o, name)) * o.score_scale, 4)
                    for name in ("high_thresh", "low_thresh", "new_track_thresh",
                                 "weak_birth_thresh") if getattr(o, name) is not None},
                "weak_confirm_hits": self.weak_confirm_hits,
                "adaptive_scores": o.adaptive_scores,
                "score_map_in_use": self._scores is not None and self._scores.engaged,
                "box_noise_std": (None if self._noise.std is None
                                  else [round(float(v), 4) for v in self._noise.std]),
                "first_stage_gate": round(self.first_stage_gate, 4)}

    def reset(self) -> None:
        """Forget all tracks and restart ids at 1."""
        self._tracks: list[_Track] = []
        self._frame = 0
        # Frames of the last two updates (frames the detector skipped come between).
        self._last_update = self._previous_update = 0
        self._next_id = 1
        self._noise.reset()
        self._jitter: list[np.ndarray] = []
        if self._scores is not None:
            self._scores.reset()

    def end_tracks(self) -> None:
        """End every open track; ids go on from where they were."""
        self._tracks = []
        self._jitter = []

    @property
    def frame_count(self) -> int:
        """Number of ``update`` calls since construction or ``reset``."""
        return self._frame

    @property
    def num_tracks(self) -> int:
        """Tracks currently held (tentative, tracked and lost)."""
        return len(self._tracks)

    @property
    def measurement_noise(self) -> np.ndarray | None:
        """(4,) box noise std the filter uses now (cx, cy, h relative to the height,
        aspect absolute): the detector's measured jitter x ``noise_gain``; None while
        the fixed model is in use (``adaptive_noise`` off, or too few samples yet)."""
        if not self.options.adaptive_noise or not self._noise.ready:
            return None
        return self._noise.std * self.options.noise_gain

    @property
    def first_stage_gate(self) -> float:
        """The first association's max cost now: ``match_thresh``, widened with the
        measured jitter under ``noise_gate`` (its overlap ``1 - match_thresh`` scaled
        by :func:`~pipeline.tracking.noise.one_sigma_iou`)."""
        o = self.options
        if not (o.noise_gate and o.adaptive_noise and self._noise.ready):
            return o.match_thresh
        return 1.0 - (1.0 - o.match_thresh) * one_sigma_iou(self._noise.std,
                                                             self._noise.aspect)

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
        self._previous_update, self._last_update = self._last_update, self._frame
        step = self._begin(detections)
        for t in self._tracks:
            t.kf.predict(freeze_height_velocity=t.state is TrackState.LOST)
        unmatched = self._match_strong(step)
        self._match_weak(step, unmatched)
        removed = self._match_tentative(step)
        born = self._births(step)
        self._housekeeping(removed, born)
        return self._output(detections, step.matched)

    def coast(self) -> Tracks:
        """Advance one frame without detections (the detector skipped it,
        ``detector.every``): every prediction moves on and no track changes state.

        Returns:
            The tracks matched at the last update, sorted by id, at their predicted
            boxes, with the score of the last box each reported and ``det_index`` -1
            (no detection; no embedding).
        """
        self._frame += 1
        for t in self._tracks:
            t.kf.predict(freeze_height_velocity=t.state is TrackState.LOST)
        shown = sorted((t for t in self._tracks if t.state is TrackState.TRACKED),
                       key=lambda t: t.track_id)
        if not shown:
            return Tracks.empty()
        return Tracks(track_id=np.array([t.track_id for t in shown], np.int64),
                      xyxy=self._boxes(shown),
                      score=np.array([t.score for t in shown], np.float32),
                      det_index=np.full(len(shown), -1, np.int64))

    def _begin(self, raw: Detections) -> _FrameStep:
        """The frame's detections with scores on the tracker's scale (``score_scale``,
        then ``adaptive_scores``), split by score."""
        o = self.options
        detections = raw
        if o.score_scale != 1.0 or self._scores is not None:
            score = raw.score / o.score_scale
            score = (self._scores(score) if self._scores is not None
                     else np.clip(score, 0.0, 1.0)).astype(np.float32)
            detections = Detections(xyxy=raw.xyxy, embedding=raw.embedding, score=score)
        score = detections.score
        return _FrameStep(
            detections=detections, xyah=xyxy_to_xyah(detections.xyxy),
            embedding=detections.embedding if detections.has_embedding else None,
            high=np.flatnonzero(score >= o.high_thresh),
            low=np.flatnonzero((score >= o.low_thresh) & (score < o.high_thresh)))

    def _match_strong(self, step: _FrameStep) -> list[_Track]:
        """Stage 1: high-score detections vs confirmed (tracked + lost) tracks, motion
        fused with appearance. Returns the confirmed tracks left unmatched."""
        pool = [t for t in self._tracks if t.state is not TrackState.TENTATIVE]
        high = step.high
        cost = self._first_stage_cost(pool, step.detections[high], step.xyah[high])
        pairs, rest_t, rest_d = linear_assignment(cost, self.first_stage_gate)
        for i, j in pairs:
            d = int(high[j])
            self._apply(pool[i], step.xyah[d], step.vector(d), strong=True)
            pool[i].state = TrackState.TRACKED
            step.matched[d] = pool[i]
        step.high = high[rest_d]
        return [pool[i] for i in rest_t]

    def _match_weak(self, step: _FrameStep, unmatched: list[_Track]) -> None:
        """Stage 2: low-score detections vs the unmatched tracks (tracked; lost too with
        ``low_extends_lost``), IoU only; tracks whose last strong box is older than
        ``max_weak_s`` take none, and a lost track refuses a box that carries a
        vector unlike its own (the rule of stage 1). Tracks still unmatched are lost."""
        o, low = self.options, step.low
        remaining = [t for t in unmatched if t.state is TrackState.TRACKED or o.low_extends_lost]
        cost = iou_distance(self._boxes(remaining), step.detections.xyxy[low])
        if self.max_weak_frames is not None:
            stale = [self._frame - t.last_strong > self.max_weak_frames for t in remaining]
            cost[np.array(stale, bool)] = np.inf
        if step.embedding is not None:
            cost = np.where(self._unlike_lost(remaining, step.embedding[low]), np.inf, cost)
        pairs, rest_t, _ = linear_assignment(cost, o.second_match_thresh)
        for i, j in pairs:
            d = int(low[j])
            self._apply(remaining[i], step.xyah[d], None)  # weak crops: keep appearance
            remaining[i].state = TrackState.TRACKED
            step.matched[d] = remaining[i]
        for i in rest_t:
            remaining[i].state = TrackState.LOST

    def _match_tentative(self, step: _FrameStep) -> set[int]:
        """Stage 3: tentative tracks vs the remaining high detections, then tracks on
        probation still unmatched vs the remaining low boxes scoring >= ``weak_birth_thresh``
        (the same score-fused cost: a weak box must overlap closely to count);
        a tentative track is confirmed after ``confirm_hits`` matches
        (``weak_confirm_hits`` on probation). Returns the ``id`` of the tentative tracks
        left unmatched (they are removed)."""
        tentative = [t for t in self._tracks if t.state is TrackState.TENTATIVE]
        high, score = step.high, step.detections.score
        cost = fuse_score(iou_distance(self._boxes(tentative), step.detections.xyxy[high]),
                          score[high])
        pairs, rest_t, rest_d = linear_assignment(cost, self.options.unconfirmed_match_thresh)
        for i, j in pairs:
            self._extend_tentative(step, tentative[i], int(high[j]))
        step.high = high[rest_d]
        unmatched = [tentative[i] for i in rest_t]
        weak = [t for t in unmatched if t.weak]
        if weak:
            rows = self._weak_rows(step, step.low)
            cost = fuse_score(iou_distance(self._boxes(weak), step.detections.xyxy[rows]),
                              score[rows])
            pairs, _, _ = linear_assignment(cost, self.options.unconfirmed_match_thresh)
            for i, j in pairs:
                self._extend_tentative(step, weak[i], int(rows[j]))
                unmatched.remove(weak[i])
        return {id(t) for t in unmatched}

    def _extend_tentative(self, step: _FrameStep, t: _Track, d: int) -> None:
        self._apply(t, step.xyah[d], step.vector(d))
        t.last_strong = self._frame
        t.hits += 1
        if t.weak and step.detections.score[d] >= self.options.new_track_thresh:
            # A sure box: an ordinary tentative track from now on, born at this box.
            t.weak, t.hits = False, 1
        if t.hits >= (self.weak_confirm_hits if t.weak else self.confirm_hits):
            self._confirm(t)
        step.matched[d] = t

    def _weak_rows(self, step: _FrameStep, rows: np.ndarray) -> np.ndarray:
        """``rows`` no track took that score in [``weak_birth_thresh``,
        ``new_track_thresh``) (none when off)."""
        o = self.options
        if o.weak_birth_thresh is None:
            return rows[:0]
        return np.array([d for d in rows if int(d) not in step.matched
                         and o.weak_birth_thresh <= step.detections.score[d]
                         < o.new_track_thresh], np.int64)

    def _births(self, step: _FrameStep) -> list[_Track]:
        """Stage 4: new tracks from the high detections nobody took that score at least
        ``new_track_thresh`` (confirmed at once with ``confirm_hits`` 1, or on the first
        frame with ``activate_first_frame``); with ``weak_birth_thresh``, tracks on
        probation from the other boxes nobody took that score at least that."""
        o, frame = self.options, self._frame
        born = []
        strong = step.high[step.detections.score[step.high] >= o.new_track_thresh]
        weak = self._weak_rows(step, np.concatenate([step.high, step.low]))
        for d in [*strong, *weak]:
            d = int(d)
            vector = step.vector(d)
            t = _Track(step.xyah[d], frame, None if vector is None else vector.copy())
            t.weak = step.detections.score[d] < o.new_track_thresh
            if not t.weak and (self.confirm_hits <= 1
                               or (frame == 1 and o.activate_first_frame)):
                self._confirm(t)
            born.append(t)
            step.matched[d] = t
        return born

    def _housekeeping(self, removed: set[int], born: list[_Track]) -> None:
        """Stage 5: the detector's jitter estimate takes this frame's samples (used from
        the next frame on); unmatched tentative tracks, lost tracks older than
        ``max_lost_s`` and lost copies of tracked ones go; the newborn join."""
        if self._jitter:
            self._noise.observe(np.stack(self._jitter))
            self._noise.refresh()
            self._jitter.clear()
        frame, max_lost = self._frame, self.max_lost_frames
        kept = [t for t in self._tracks if id(t) not in removed
                and not (t.state is TrackState.LOST and frame - t.last_frame > max_lost)]
        self._tracks = self._drop_duplicate_lost(kept) + born

    # -- helpers -------------------------------------------------------------------

    def _confirm(self, track: _Track) -> None:
        track.state = TrackState.TRACKED
        if track.track_id == 0:
            track.track_id = self._next_id
            self._next_id += 1

    def _apply(self, track: _Track, xyah: np.ndarray, emb: np.ndarray | None,
               *, strong: bool = False) -> None:
        if not strong:
            track.recent = []
        elif track.last_frame == self._previous_update:  # evenly spaced with detector.every
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
            track.update_embedding(emb, self.options.ema_alpha)

    @staticmethod
    def _boxes(tracks: list[_Track]) -> np.ndarray:
        if not tracks:
            return np.zeros((0, 4), np.float32)
        return xyah_to_xyxy(np.stack([t.kf.mean[:4] for t in tracks]))

    def _unlike_lost(self, tracks: list[_Track], det_emb: np.ndarray,
                     app: np.ndarray | None = None) -> np.ndarray:
        """(T, D) bool: a lost track and a detection both carry a vector and the two
        disagree (cosine distance > ``appearance_thresh``). ``app``: the (T, D)
        distances when already computed (rows of tracks without a vector unused)."""
        unlike = np.zeros((len(tracks), det_emb.shape[0]), bool)
        lost = [i for i, t in enumerate(tracks) if t.state is TrackState.LOST
                and t.embedding is not None and t.embedding.shape[0] == det_emb.shape[1]]
        if not lost or det_emb.shape[0] == 0:
            return unlike
        dist = (app[lost] if app is not None else
                embedding_distance(np.stack([tracks[i].embedding for i in lost]), det_emb))
        unlike[lost] = (dist > self.options.appearance_thresh) & np.any(det_emb, axis=1)[None, :]
        return unlike

    def _first_stage_cost(
        self, pool: list[_Track], dets: Detections, det_xyah: np.ndarray
    ) -> np.ndarray:
        o = self.options
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
            motion, app, iou=iou, squared_mahalanobis=d2, min_iou=o.min_iou,
            gate_threshold=CHI2_95[4], appearance_weight=o.appearance_weight,
            appearance_thresh=o.appearance_thresh, mode=o.fusion)
        motion_only = np.where(iou >= o.min_iou, motion, np.inf)
        cost = np.where(no_appearance, motion_only, fused)
        # Re-acquisition: a lost track takes a box only when its appearance agrees too.
        unlike = self._unlike_lost(pool, dets.embedding, app)
        return np.where(unlike, np.inf, cost).astype(np.float32)

    def _drop_duplicate_lost(self, tracks: list[_Track]) -> list[_Track]:
        """Drop lost tracks whose prediction sits on a tracked one: they are stale
        copies and would otherwise compete for that person's next detection."""
        lost = [t for t in tracks if t.state is TrackState.LOST]
        active = [t for t in tracks if t.state is TrackState.TRACKED]
        if not lost or not active:
            return tracks
        overlap = iou_matrix(self._boxes(lost), self._boxes(active)).max(axis=1)
        stale = {id(t) for t, o in zip(lost, overlap, strict=True)
                 if o > self.options.duplicate_iou}
        return [t for t in tracks if id(t) not in stale]

    def _output(self, detections: Detections, matched: dict[int, _Track]) -> Tracks:
        rows = sorted(
            (t.track_id, d) for d, t in matched.items() if t.state is TrackState.TRACKED
        )
        if not rows:
            return Tracks.empty()
        ids = np.array([r[0] for r in rows], np.int64)
        det_index = np.array([r[1] for r in rows], np.int64)
        for d in det_index:
            matched[int(d)].score = float(detections.score[d])
        xyxy = detections.xyxy[det_index]
        if self.options.output_box == "filtered":
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


TRACKERS: dict[str, type[Tracker]] = {"bytetrack": ByteTracker}
"""Per-camera trackers by config name; each takes its ``options_type`` record."""
