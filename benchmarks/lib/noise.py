"""Detections made from ground truth with controlled, seeded detector errors.

Tracker studies without frames (MOT17 gt only) need detections whose errors are known:
:func:`make_detections` turns the considered gt boxes of a sequence (the rows that
:mod:`pipeline.evaluation.mot` scores: MOT17 class 1 with ``conf != 0``, MOT15 ``conf !=
0``) into per-frame detections with

* **misses**: a fraction ``miss_rate`` of the gt boxes is not detected. Misses of one person
  can come in episodes (``miss_run`` = mean length in frames, like an occlusion); the long-run
  fraction stays ``miss_rate`` either way;
* **false positives**: ``fp_per_frame`` boxes per frame on average (Poisson), each a "ghost"
  that lives ``fp_run`` frames on average (geometric) at one place, with the size of a real
  gt box of the sequence at a similar image row (so sizes follow the scene's perspective);
* **jitter**: independent per-frame noise of the box centre (normal, std ``jitter`` x the box
  width/height) and of its width and height (log-normal, same std);
* **misaligned boxes**: a fraction ``misalign_rate`` of the detected boxes is off like a real
  detector's worst boxes: shifted (by ``misalign_size`` x 0.5-1.5 of the box size in a random
  direction), scaled (too loose or too tight by that factor) or truncated (that fraction cut
  off one side, the bottom half of the time: hidden legs);
* **scores**: true boxes score ``0.95 - score_drop * (1 - visibility)`` (+ normal noise of std
  ``score_std``), so occluded people get the weak scores that ByteTrack-style trackers treat
  separately; MOT15 gt has no visibility (taken as 1). Ghosts score uniformly in
  [0.1, ``fp_score_max``] (constant per ghost, plus the same noise).

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``: the same inputs
and seed give identical output. The per-gt-row random numbers are drawn for every row
whatever the level, so two levels with one seed share them (common random numbers): the
boxes missed at ``miss_rate=0.1`` are among those missed at ``0.3``, which keeps curves over
levels smooth.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from pipeline.evaluation.mot import GT_FORMATS, PEDESTRIAN, _resolve_format
from pipeline.types import Detections

__all__ = [
    "NoiseLevel",
    "SyntheticDetections",
    "SequenceInfo",
    "considered_gt",
    "make_detections",
    "read_seqinfo",
    "SCORE_TRANSFORMS",
    "transform_scores",
    "subsample_frames",
    "renumber_rows",
    "write_sequence",
]

TRUE_BOX, MISALIGNED, FALSE_POSITIVE = 0, 1, 2
"""Values of :attr:`SyntheticDetections.kind`."""

_SCORE_MAX = 0.95
_FP_SCORE_MIN = 0.1


@dataclass(frozen=True)
class NoiseLevel:
    """How bad the simulated detector is. All defaults: a perfect detector.

    Attributes:
        miss_rate: Fraction of gt boxes not detected, in [0, 1).
        miss_run: Mean length in frames of one person's miss episode; None = independent
            misses. Must be >= max(1, miss_rate / (1 - miss_rate)).
        fp_per_frame: Mean number of false positives per frame (>= 0).
        fp_run: Mean lifetime in frames of one false positive (>= 1; 1 = one-frame blips).
        jitter: Std of the box centre offset and of the log width/height, as a fraction of
            the box width/height (>= 0).
        misalign_rate: Fraction of detected boxes that are misaligned, in [0, 1].
        misalign_size: Typical misalignment as a fraction of the box size (>= 0).
        score_drop: Score lost by a fully occluded person (visibility 0), in [0, 0.95).
        score_std: Std of the normal noise added to every score (>= 0).
        fp_score_max: Upper end of the uniform false-positive score, in [0.1, 1].
    """

    miss_rate: float = 0.0
    miss_run: float | None = None
    fp_per_frame: float = 0.0
    fp_run: float = 1.0
    jitter: float = 0.0
    misalign_rate: float = 0.0
    misalign_size: float = 0.25
    score_drop: float = 0.5
    score_std: float = 0.0
    fp_score_max: float = 0.8

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.miss_rate < 1.0:
            problems.append(f"miss_rate must be in [0, 1), got {self.miss_rate}")
        elif self.miss_run is not None:
            low = max(1.0, self.miss_rate / (1.0 - self.miss_rate))
            if self.miss_run < low:
                problems.append(f"miss_run must be >= {low:.3g} for miss_rate "
                                f"{self.miss_rate}, got {self.miss_run}")
        if self.fp_per_frame < 0 or self.fp_run < 1:
            problems.append(f"need fp_per_frame >= 0 and fp_run >= 1, got {self.fp_per_frame}, "
                            f"{self.fp_run}")
        if self.jitter < 0 or self.misalign_size < 0 or self.score_std < 0:
            problems.append("jitter, misalign_size and score_std must be >= 0")
        if not 0.0 <= self.misalign_rate <= 1.0:
            problems.append(f"misalign_rate must be in [0, 1], got {self.misalign_rate}")
        if not 0.0 <= self.score_drop < _SCORE_MAX:
            problems.append(f"score_drop must be in [0, {_SCORE_MAX}), got {self.score_drop}")
        if not _FP_SCORE_MIN <= self.fp_score_max <= 1.0:
            problems.append(f"fp_score_max must be in [{_FP_SCORE_MIN}, 1], got "
                            f"{self.fp_score_max}")
        if problems:
            raise ValueError("NoiseLevel: " + "; ".join(problems))

    def as_dict(self) -> dict[str, float | None]:
        """The fields as a plain dict (for JSON reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(eq=False)
class SyntheticDetections:
    """Detections of a whole sequence, one row per box.

    Attributes:
        frame: int64 (N,) 1-based frame numbers, rows sorted by frame.
        xyxy: float64 (N, 4) boxes in pixels (not clipped for true boxes, like gt).
        score: float32 (N,) scores in [0.01, 1].
        gt_id: int64 (N,) the gt identity a box came from; -1 for false positives.
        kind: int8 (N,) ``TRUE_BOX`` (possibly jittered), ``MISALIGNED`` or ``FALSE_POSITIVE``.
        num_frames: Frames in the sequence (frames without boxes included).
    """

    frame: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    gt_id: np.ndarray
    kind: np.ndarray
    num_frames: int

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def per_frame(self) -> list[Detections]:
        """One :class:`Detections` per frame 1..num_frames (empty frames included)."""
        bounds = np.searchsorted(self.frame, np.arange(1, self.num_frames + 2))
        return [Detections(xyxy=self.xyxy[a:b], score=self.score[a:b])
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def to_mot_rows(self) -> np.ndarray:
        """(N, 10) MOTChallenge rows ``frame, gt_id, left, top, width, height, score, -1, -1,
        -1`` (false positives get ids -1, -2, ... so that ids stay unique per frame)."""
        ids = self.gt_id.astype(np.float64)
        fp = self.gt_id < 0
        ids[fp] = -1.0 - np.arange(int(fp.sum()))
        tlwh = self.xyxy.copy()
        tlwh[:, 2:] -= tlwh[:, :2]
        rest = -np.ones((len(self), 3))
        return np.column_stack([self.frame, ids, tlwh, self.score, rest])


@dataclass(frozen=True)
class SequenceInfo:
    """The fields of a MOTChallenge ``seqinfo.ini`` the studies need."""

    name: str
    num_frames: int
    width: int
    height: int
    fps: float


def read_seqinfo(path: str | Path) -> SequenceInfo:
    """Read a MOTChallenge ``seqinfo.ini`` (or the folder holding one).

    Raises:
        FileNotFoundError: No such file.
        ValueError: A required key (seqLength, imWidth, imHeight) is missing.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "seqinfo.ini"
    if not path.is_file():
        raise FileNotFoundError(f"seqinfo.ini not found: {path}")
    parser = configparser.ConfigParser()
    parser.read(path)
    try:
        section = parser["Sequence"]
        return SequenceInfo(name=section.get("name", path.parent.name),
                            num_frames=int(section["seqLength"]),
                            width=int(section["imWidth"]), height=int(section["imHeight"]),
                            fps=float(section.get("frameRate", "30")))
    except KeyError as missing:
        raise ValueError(f"{path}: [Sequence] needs seqLength, imWidth and imHeight "
                         f"(missing {missing})") from None


# Another detector's score scale, as affine maps of the study's scores (true boxes about
# 0.45-1.0, false positives 0.1-0.8): squeezed toward 0.2 (a detector whose sure boxes
# score 0.35, like MOT's public ACF boxes read as probabilities), shifted down, rescaled.
SCORE_TRANSFORMS: dict[str, tuple[float, float]] = {
    "none": (1.0, 0.0),
    "compress": (0.3, 0.2 - 0.3 * 0.5),  # 0.2 + 0.3 (s - 0.5): 1.0 -> 0.35, 0.45 -> 0.185
    "shift": (1.0, -0.35),  # s - 0.35 (clipped at 0.01): 1.0 -> 0.65, 0.45 -> 0.1
    "rescale": (0.35, 0.0),  # 0.35 s: 1.0 -> 0.35, 0.45 -> 0.16
}


def transform_scores(detections: Detections, name: str) -> Detections:
    """``detections`` with scores mapped by ``SCORE_TRANSFORMS[name]`` (kept >= 0.01)."""
    gain, offset = SCORE_TRANSFORMS[name]
    if name == "none":
        return detections
    score = np.maximum(gain * detections.score + offset, 0.01).astype(np.float32)
    return Detections(xyxy=detections.xyxy, score=score, embedding=detections.embedding)


def subsample_frames(num_frames: int, fps: float, target_fps: float) -> list[int]:
    """1-based frames of a ``num_frames`` sequence at ``fps`` nearest to a ``target_fps``
    rate (every frame when the target is not lower)."""
    if target_fps >= fps:
        return list(range(1, num_frames + 1))
    step = fps / target_fps
    kept = sorted({1 + int(np.floor(k * step + 0.5)) for k in range(int(num_frames / step) + 1)})
    return [f for f in kept if f <= num_frames]


def renumber_rows(rows: np.ndarray, kept: list[int]) -> np.ndarray:
    """MOT rows of the ``kept`` frames only, renumbered 1, 2, ... in that order."""
    new = {f: i for i, f in enumerate(kept, 1)}
    frames = rows[:, 0].astype(np.int64)
    mask = np.isin(frames, kept)
    out = rows[mask].copy()
    out[:, 0] = [new[int(f)] for f in frames[mask]]
    return out


def write_sequence(folder: Path, gt: np.ndarray, info: SequenceInfo) -> None:
    """A MOTChallenge sequence folder (``gt/gt.txt`` and ``seqinfo.ini``) for scoring."""
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "gt" / "gt.txt", gt, delimiter=",", fmt="%.6g")
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={folder.name}\nframeRate={info.fps:g}\n"
        f"seqLength={info.num_frames}\nimWidth={info.width}\nimHeight={info.height}\n")


def considered_gt(gt: np.ndarray, gt_format: str = "auto") -> np.ndarray:
    """The gt rows that count as people to track, as :mod:`pipeline.evaluation.mot` scores.

    Args:
        gt: (N, >=7) MOTChallenge gt rows ``frame,id,left,top,width,height,conf[,class,
            visibility]``.
        gt_format: 'auto', 'mot15', 'mot16', 'mot17' or 'mot20' (see ``evaluation.mot``).

    Returns:
        The rows with ``int(conf) != 0`` (and class pedestrian for MOT16/17/20).
    """
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim != 2 or (len(gt) and gt.shape[1] < 7):
        raise ValueError(f"gt must be (N, >=7) MOTChallenge rows, got shape {gt.shape}")
    if not len(gt):
        return gt
    fmt = _resolve_format(gt, gt_format)
    keep = gt[:, 6].astype(np.int64) != 0
    if GT_FORMATS[fmt] is not None:
        keep &= gt[:, 7].astype(np.int64) == PEDESTRIAN
    return gt[keep]


def _missed(ids: np.ndarray, u: np.ndarray, level: NoiseLevel) -> np.ndarray:
    """Per-row miss flags; rows must be sorted by (id, frame)."""
    p = level.miss_rate
    if level.miss_run is None or p == 0.0:
        return u < p
    stay = 1.0 - 1.0 / level.miss_run  # P(miss | missed the frame before)
    enter = p * (1.0 - stay) / (1.0 - p)  # keeps the stationary miss rate at p
    out = np.empty(len(u), bool)
    prev_id, prev = None, False
    for i, (track, draw) in enumerate(zip(ids.tolist(), u.tolist(), strict=True)):
        threshold = p if track != prev_id else (stay if prev else enter)
        prev = out[i] = draw < threshold
        prev_id = track
    return out


def _misalign(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray,
              u_kind: np.ndarray, u_mag: np.ndarray, u_dir: np.ndarray,
              u_side: np.ndarray) -> None:
    """Shift, scale or truncate boxes in place (centre x/y, width, height arrays, pixels).

    ``u_kind`` (uniform) picks the kind, ``u_mag`` is the magnitude as a fraction of the box
    size, ``u_dir`` (uniform) the shift direction or loose/tight, ``u_side`` (uniform) the
    truncated side.
    """
    kind = np.minimum((u_kind * 3).astype(np.int64), 2)
    # shift: the centre moves by m x the box size in a random direction
    s = kind == 0
    angle = 2 * np.pi * u_dir[s]
    cx[s] += u_mag[s] * w[s] * np.cos(angle)
    cy[s] += u_mag[s] * h[s] * np.sin(angle)
    # scale: too loose (x(1+m)) or too tight (/(1+m)) around the centre
    s = kind == 1
    factor = np.where(u_dir[s] < 0.5, 1.0 + u_mag[s], 1.0 / (1.0 + u_mag[s]))
    w[s] *= factor
    h[s] *= factor
    # truncation: a fraction m (at most 60%) cut off one side; bottom half of the time
    s = np.flatnonzero(kind == 2)
    cut = np.minimum(u_mag[s], 0.6)
    side = u_side[s]
    bottom, top, left = side < 0.5, (side >= 0.5) & (side < 0.65), (side >= 0.65) & (side < 0.825)
    right = side >= 0.825
    for mask, axis_size, centre, sign in ((bottom, h, cy, -1), (top, h, cy, 1),
                                          (left, w, cx, 1), (right, w, cx, -1)):
        rows = s[mask]
        removed = cut[mask] * axis_size[rows]
        centre[rows] += sign * removed / 2
        axis_size[rows] -= removed


def make_detections(
    gt: np.ndarray,
    level: NoiseLevel,
    *,
    seed: int,
    num_frames: int | None = None,
    image_size_wh: tuple[int, int] | None = None,
    gt_format: str = "auto",
) -> SyntheticDetections:
    """Detections of one sequence made from its gt with the errors of ``level``.

    Args:
        gt: (N, >=7) MOTChallenge gt rows (see :func:`considered_gt`; the visibility column of
            MOT16/17/20 gt sets the scores).
        level: The error model.
        seed: Seed of the ``numpy.random.Generator``; same inputs + seed = same output.
        num_frames: Sequence length; default the last gt frame.
        image_size_wh: (width, height) in pixels, where false positives are placed (and
            clipped); default the extent of the gt boxes.
        gt_format: As in :func:`considered_gt`.

    Returns:
        The detections, sorted by frame.
    """
    rows = considered_gt(gt, gt_format)
    rng = np.random.default_rng(seed)
    last = int(rows[:, 0].max()) if len(rows) else 0
    num_frames = int(num_frames) if num_frames is not None else last
    if num_frames < last:
        raise ValueError(f"num_frames={num_frames} but the gt has boxes up to frame {last}")
    if image_size_wh is None:
        right = rows[:, 2] + rows[:, 4] if len(rows) else np.ones(1)
        bottom = rows[:, 3] + rows[:, 5] if len(rows) else np.ones(1)
        image_size_wh = (int(np.ceil(right.max())), int(np.ceil(bottom.max())))
    width, height = image_size_wh

    # Per-gt-row draws: always all of them, in this order (common random numbers).
    order = np.lexsort((rows[:, 0], rows[:, 1]))
    rows = rows[order]
    n = len(rows)
    u_miss, u_mis, u_kind, u_mag, u_dir, u_side = rng.random((6, n))
    noise = rng.standard_normal((5, n))

    visibility = rows[:, 8] if rows.shape[1] > 8 and _resolve_format(
        rows, gt_format) != "mot15" else np.ones(n)
    keep = ~_missed(rows[:, 1], u_miss, level)
    cx = rows[:, 2] + rows[:, 4] / 2
    cy = rows[:, 3] + rows[:, 5] / 2
    w, h = rows[:, 4].copy(), rows[:, 5].copy()
    if level.jitter > 0:
        cx = cx + level.jitter * noise[0] * w
        cy = cy + level.jitter * noise[1] * h
        w *= np.exp(level.jitter * noise[2])
        h *= np.exp(level.jitter * noise[3])
    misaligned = keep & (u_mis < level.misalign_rate)
    if misaligned.any():
        sel = np.flatnonzero(misaligned)
        sub = [a[sel].copy() for a in (cx, cy, w, h)]
        _misalign(*sub, u_kind[sel], level.misalign_size * (0.5 + u_mag[sel]), u_dir[sel],
                  u_side[sel])
        for full, part in zip((cx, cy, w, h), sub, strict=True):
            full[sel] = part
    score = _SCORE_MAX - level.score_drop * (1.0 - np.clip(visibility, 0.0, 1.0))
    score = score + level.score_std * noise[4]
    if level.jitter == 0 and not misaligned.any():  # exact gt boxes, bit for bit
        xyxy = np.column_stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4],
                                rows[:, 3] + rows[:, 5]])
    else:
        xyxy = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    true_part = (rows[keep, 0].astype(np.int64), xyxy[keep], score[keep],
                 rows[keep, 1].astype(np.int64),
                 np.where(misaligned[keep], MISALIGNED, TRUE_BOX).astype(np.int8))

    fp_part = _false_positives(rng, rows, level, num_frames, width, height)
    frame, boxes, scores, ids, kind = (np.concatenate([a, b]) for a, b in
                                       zip(true_part, fp_part, strict=True))
    by_frame = np.argsort(frame, kind="stable")
    return SyntheticDetections(
        frame=frame[by_frame], xyxy=boxes[by_frame].astype(np.float64),
        score=np.clip(scores[by_frame], 0.01, 1.0).astype(np.float32),
        gt_id=ids[by_frame], kind=kind[by_frame], num_frames=num_frames)


def _false_positives(rng: np.random.Generator, rows: np.ndarray, level: NoiseLevel,
                     num_frames: int, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Ghost boxes: Poisson births, geometric lifetimes, gt-like sizes, per-frame jitter."""
    empty = (np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64),
             np.zeros(0, np.int8))
    if level.fp_per_frame == 0 or num_frames == 0 or not len(rows):
        return empty
    # Ghosts alive at frame 1 (stationary count), then births with rate fp/fp_run per frame.
    starts = [np.ones(rng.poisson(level.fp_per_frame), np.int64)]
    births = rng.poisson(level.fp_per_frame / level.fp_run, num_frames - 1)
    starts.append(np.repeat(np.arange(2, num_frames + 1), births))
    start = np.concatenate(starts)
    g = len(start)
    life = rng.geometric(1.0 / level.fp_run, g)
    template = rows[rng.integers(0, len(rows), g)]
    size = np.exp(0.1 * rng.standard_normal((g, 2)))
    w, h = template[:, 4] * size[:, 0], template[:, 5] * size[:, 1]
    # Inside the image (a detector reports what it sees), near the template's image row.
    w, h = np.minimum(w, width), np.minimum(h, height)
    bottom = template[:, 3] + template[:, 5] + 0.05 * height * rng.standard_normal(g)
    bottom = np.clip(bottom, h, height)
    left = rng.random(g) * (width - w)
    base_score = _FP_SCORE_MIN + (level.fp_score_max - _FP_SCORE_MIN) * rng.random(g)
    end = np.minimum(start + life - 1, num_frames)
    count = end - start + 1
    ghost = np.repeat(np.arange(g), count)
    frame = start[ghost] + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    m = len(frame)
    noise = rng.standard_normal((5, m))
    gw, gh = w[ghost], h[ghost]
    cx = left[ghost] + gw / 2 + level.jitter * noise[0] * gw
    cy = bottom[ghost] - gh / 2 + level.jitter * noise[1] * gh
    gw = gw * np.exp(level.jitter * noise[2])
    gh = gh * np.exp(level.jitter * noise[3])
    xyxy = np.column_stack([cx - gw / 2, cy - gh / 2, cx + gw / 2, cy + gh / 2])
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, width)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, height)
    valid = (xyxy[:, 2] - xyxy[:, 0] >= 2) & (xyxy[:, 3] - xyxy[:, 1] >= 2)
    score = base_score[ghost] + level.score_std * noise[4]
    return (frame[valid].astype(np.int64), xyxy[valid], score[valid],
            -np.ones(int(valid.sum()), np.int64),
            np.full(int(valid.sum()), FALSE_POSITIVE, np.int8))

