"""The per-camera tracker's options: one frozen record, checked when it is made.

The run config's ``tracker`` section (all but ``name``) becomes one
:class:`TrackerOptions`, validated once when the run is built; the tracker's constructor
is the only consumer. Fields are documented on the class.

Durations are in seconds of video, not frames: a tracker learns its camera's frame rate
(``ByteTracker(fps=...)`` or ``set_fps``) and turns them into frame counts, so a 2 fps
camera and a 30 fps one keep a lost person for the same time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from pipeline.tracking.costs import FUSION_MODES
from pipeline.types import renamed_to_seconds, seconds_to_frames

__all__ = ["OUTPUT_BOXES", "TrackerOptions"]

# What a matched track reports: the Kalman filter's corrected box, or the raw detection.
OUTPUT_BOXES = ("filtered", "detection")


@dataclass(frozen=True)
class TrackerOptions:
    """How a ``ByteTracker`` associates, confirms and ends tracks.

    Attributes:
        high_thresh: Detections scoring >= this enter the first association.
        low_thresh: Detections scoring in [low_thresh, high_thresh) enter the second.
        new_track_thresh: Unmatched high detections scoring >= this start a track.
        match_thresh: Max fused cost accepted in the first association, for exact
            boxes (see ``noise_gate``).
        second_match_thresh: Max ``1 - IoU`` accepted for low-score detections.
        unconfirmed_match_thresh: Max cost accepted for tentative tracks.
        max_lost_s: Seconds a lost track is kept for re-acquisition. 2 s, measured
            (docs/BENCHMARKS.md §3f): on PETS09 with the shipped re-id 63.4 / 86.5
            HOTA / IDF1 against 62.0 / 83.2 at 3 s (30 frames at 10 fps, the former
            default) and 61.4 / 81.6 at 1 s; on the MOT17 noise study at 7, 10, 15 fps
            and the native rates, above 3 s at every level.
        min_hits: Consecutive matches that confirm a track (1 = confirm at birth);
            used when ``confirm_s`` is None.
        confirm_s: When set, a tentative track is confirmed once it has been matched
            in every frame for this many seconds after its birth
            (``1 + round(confirm_s * fps)`` matches), instead of ``min_hits``: at a low
            frame rate a person moves far between frames and a second overlapping box
            is hard to get, at a high one two frames are a glimpse.
        activate_first_frame: Confirm tracks born on the very first frame at once
            (a video that starts mid-scene has people on it already).
        min_iou: Overlap for a pair to be allowed on motion alone (first stage).
        appearance_weight: Weight of appearance in the fused first-stage cost.
        appearance_thresh: Cosine distance under which a pair looks alike; pairs
            without overlap are allowed only when inside the Kalman gate and alike, and a
            lost track takes only a box that looks like it.
        fusion: "weighted" or "min", see ``costs.fuse_motion_appearance``.
        ema_alpha: Momentum of a track's appearance (``e = a * e + (1 - a) * new``).
        duplicate_iou: A lost track overlapping a tracked one above this is dropped.
        score_scale: The score the detector gives a certain detection. Scores are
            divided by it (and clipped to [0, 1]) before every threshold and the score
            fusion, so detections replayed from another detector (e.g. MOT15's ACF,
            -0.5 ... 139) track like probabilities once their scale is declared; the
            output keeps the detector's own scores. 1.0 = scores are probabilities.
        adaptive_scores: Put the detector's scores on the tracker's scale from their
            running distribution (``pipeline.tracking.scores``): two quantiles of the
            camera's last ``score_window_s`` seconds of scores are mapped onto the
            reference detector's, so a detector whose sure boxes score 0.3 is tracked
            like one whose sure boxes score 0.9 (docs/BENCHMARKS.md §3h). ``True``:
            always; ``"auto"`` (default): only while fewer than 1% of the camera's
            scores reach ``new_track_thresh`` (the fixed thresholds would start no track
            at all); ``False``: never. Always on costs a little on a detector of the
            usual scale, and looser rules for switching it on misfired on real footage.
            Applied after ``score_scale``. The
            thresholds in use (on the detector's scale) are in the run summary;
            ``reid.min_score`` and ``detector.conf`` stay on the detector's own scale.
        score_window_s: Seconds of scores ``adaptive_scores`` reads.
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
        noise_gate: Widen the first association's gate with the detector's measured
            jitter (needs ``adaptive_noise``): the overlap it asks of a pair,
            ``1 - match_thresh``, is scaled by the IoU a correct match keeps when the
            box is one measured standard deviation off
            (``pipeline.tracking.noise.one_sigma_iou``): exact boxes keep
            ``match_thresh``, a detector whose boxes wobble by 3% of their size gets
            about 0.83, one at 12% about 0.88 (docs/BENCHMARKS.md §3i).
        output_box: "filtered" (default) reports the filter's corrected box, the
            ByteTrack/BoT-SORT choice; "detection" the matched detection unchanged.
        weak_birth_thresh: When set, detections nobody took that score in
            [``weak_birth_thresh``, ``new_track_thresh``) start tracks on probation:
            they are extended by boxes scoring >= ``weak_birth_thresh`` (high or low)
            and confirmed only after ``weak_min_hits`` matches in consecutive
            frames, so a partly hidden person whose boxes never reach
            ``new_track_thresh`` is still followed while a flickering false box is not.
            ``None`` = only ``new_track_thresh`` starts tracks (ByteTrack). 0.25
            (ByteTrack's own new-track threshold) with four matches: measured on the
            MOT17 noise study with shifted scores and on PETS09 (docs/BENCHMARKS.md §3j).
        weak_min_hits: Consecutive matches that confirm a track born on probation
            (at least the ordinary ``confirm_hits``); a box scoring >=
            ``new_track_thresh`` ends the probation (the track then counts its
            matches from that box, as one born from it would).
        max_weak_s: Seconds after a track's last strong (>= ``high_thresh``) box
            during which low-score boxes may still extend or re-acquire it (stage 2).
            Measured on PETS09 (docs/BENCHMARKS.md §3e): beyond 3 s, 5 low-score
            rows hit a person and 153 did not (a 28 s ghost held by a background
            box scoring 0.1-0.16). ``None`` = no limit (ByteTrack).

    The score thresholds (0.4 / 0.1 / 0.5) come from ``benchmarks/tracker_thresholds.py``
    (PETS09 with the real detector, HA-CNN and motion only) and the MOT17 noise study
    (``benchmarks/noise_study.py --ours-variants``): against the earlier 0.6 / 0.7 they
    keep partly hidden people, whose detector scores drop (docs/BENCHMARKS.md §3).

    Raises:
        ValueError: a value out of range (the message names the field).
    """

    high_thresh: float = 0.4
    low_thresh: float = 0.1
    new_track_thresh: float = 0.5
    match_thresh: float = 0.8
    second_match_thresh: float = 0.5
    unconfirmed_match_thresh: float = 0.7
    max_lost_s: float = 2.0
    min_hits: int = 2
    confirm_s: float | None = None
    activate_first_frame: bool = True
    min_iou: float = 0.1
    appearance_weight: float = 0.5
    appearance_thresh: float = 0.25
    fusion: str = "weighted"
    ema_alpha: float = 0.9
    duplicate_iou: float = 0.85
    score_scale: float = 1.0
    adaptive_scores: bool | str = "auto"
    score_window_s: float = 60.0
    low_extends_lost: bool = True
    adaptive_noise: bool = True
    noise_gain: float = 3.0
    noise_gate: bool = True
    output_box: str = "filtered"
    max_weak_s: float | None = 3.0
    weak_birth_thresh: float | None = 0.25
    weak_min_hits: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_thresh <= self.high_thresh <= 1.0:
            raise ValueError(f"need 0 <= low_thresh <= high_thresh <= 1, got "
                             f"{self.low_thresh}, {self.high_thresh}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {FUSION_MODES}")
        if not self.score_scale > 0 or not np.isfinite(self.score_scale):
            raise ValueError(
                f"score_scale must be a positive number (the score your detector gives a "
                f"certain detection, 1.0 for probabilities), got {self.score_scale}")
        if self.adaptive_scores not in (True, False, "auto"):
            raise ValueError(f"adaptive_scores must be true, false or auto, got "
                             f"{self.adaptive_scores!r}")
        if not self.score_window_s > 0:
            raise ValueError(f"score_window_s must be > 0 seconds, got {self.score_window_s}")
        if self.output_box not in OUTPUT_BOXES:
            raise ValueError(f"unknown output_box {self.output_box!r}; choose one of "
                             f"{OUTPUT_BOXES}")
        if not self.noise_gain > 0 or not np.isfinite(self.noise_gain):
            raise ValueError(f"noise_gain must be a positive number, got {self.noise_gain}")
        if self.min_hits < 1 or not self.max_lost_s >= 0:
            raise ValueError(f"min_hits must be >= 1 and max_lost_s >= 0, got "
                             f"{self.min_hits}, {self.max_lost_s}")
        if self.weak_birth_thresh is not None and not (
                self.low_thresh <= self.weak_birth_thresh <= self.new_track_thresh):
            raise ValueError(f"weak_birth_thresh must be None or in [low_thresh, "
                             f"new_track_thresh] = [{self.low_thresh}, "
                             f"{self.new_track_thresh}], got {self.weak_birth_thresh}")
        if self.weak_min_hits < 1:
            raise ValueError(f"weak_min_hits must be >= 1, got {self.weak_min_hits}")
        for name in ("max_weak_s", "confirm_s"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0 seconds or None, got {value}")

    def confirm_hits(self, fps: float) -> int:
        """Matches that confirm a tentative track at ``fps`` (``confirm_s`` or ``min_hits``)."""
        if self.confirm_s is None:
            return self.min_hits
        return 1 + seconds_to_frames(self.confirm_s, fps)

    def weak_confirm_hits(self, fps: float) -> int:
        """Matches that confirm a track born on probation at ``fps``."""
        return max(self.confirm_hits(fps), self.weak_min_hits)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrackerOptions:
        """From a config mapping; ValueError names an unknown key and lists the known."""
        names = {f.name for f in fields(cls)}
        renamed = renamed_to_seconds(sorted(params))
        if renamed:
            raise ValueError(renamed)
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                             f"{', '.join(sorted(names))}")
        return cls(**params)
