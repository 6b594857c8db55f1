"""Detector-noise study: trackers on MOT17 ground truth turned into noisy detections.

The seven MOT17 training ground truths (``../shared/data/mot/MOT17-train``, no frames) are
turned into detections by ``benchmarks.lib.noise.make_detections`` at a ladder of
noise levels (misses, false positives, jitter, misaligned boxes; fixed seeds), and each
tracker gets the identical detections:

* ``ours``: ``pipeline.tracking.ByteTracker`` with its defaults (the shipped configs do not
  override them), motion only (there are no frames to embed);
* ``ul-bytetrack`` / ``ul-botsort``: ``ultralytics.trackers`` BYTETracker / BOTSORT with the
  ``bytetrack.yaml`` / ``botsort.yaml`` defaults of ``YOLO.track`` (BoT-SORT: no re-id, and
  no camera-motion compensation without frames);
* ``oracle``: the detections labelled with the gt id they came from (false positives get
  one-frame ids): the ceiling that detection errors alone leave.

Scores are trackeval's (``pipeline.evaluation.mot``), per sequence and COMBINED over the
seven (trackeval's ``combine_sequences``). Prints a markdown table (COMBINED), optionally
writes JSON with every sequence.

    nice -n 10 python3 -m benchmarks.noise_study --json runs/noise_study.json
    python3 -m benchmarks.noise_study --sequences MOT17-05 MOT17-09 --levels 0 2   # quick
    python3 -m benchmarks.noise_study --sweep miss      # vary one factor, others zero
    python3 -m benchmarks.noise_study --score-drop 0    # scores ignore occlusion
    python3 -m benchmarks.noise_study --trackers ours \
        --ours-variants high_thresh=0.5,new_track_thresh=0.6   # our tracker, other thresholds
    python3 -m benchmarks.noise_study --fps 7      # every sequence subsampled to 7 fps
    python3 -m benchmarks.noise_study --scores compress   # another detector's score scale

Our tracker is told each sequence's frame rate (its durations are seconds); the
ultralytics trackers count frames (``track_buffer`` 30), as ``YOLO.track`` runs them.
``--fps F`` keeps the frames nearest to a rate of F (detections are made at the native
rate first, so misses and false positives last as long in seconds) and scores against
the gt of the kept frames. ``--scores`` passes every tracker the same detections with
their scores transformed (``SCORE_TRANSFORMS``): a detector on another scale.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.lib.noise import (
    SCORE_TRANSFORMS,
    NoiseLevel,
    make_detections,
    read_seqinfo,
    renumber_rows,
    subsample_frames,
    transform_scores,
    write_sequence,
)
from benchmarks.tracker_adapters import run_ours, run_ultralytics, save_mot
from pipeline.evaluation.mot import evaluate_mot_folder, read_mot_txt

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]

MOT17 = REPO.parent / "shared" / "data" / "mot" / "MOT17-train"
TRACKERS = ("ours", "ul-bytetrack", "ul-botsort", "oracle")
KEYS = ("HOTA", "DetA", "AssA", "IDF1", "MOTA", "IDSW")

# Misses come in episodes (3 frames on average) and false positives live 3 frames: a
# detector's errors persist a little. Scores: 0.95 - 0.5 x (1 - visibility), noise 0.05.
_COMMON = dict(miss_run=3.0, fp_run=3.0, score_std=0.05)
LEVELS: dict[str, NoiseLevel] = {
    "0 none": NoiseLevel(score_std=0.05),
    "1 light": NoiseLevel(miss_rate=0.1, fp_per_frame=0.5, jitter=0.03, misalign_rate=0.05,
                          **_COMMON),
    "2 medium": NoiseLevel(miss_rate=0.2, fp_per_frame=1.0, jitter=0.05, misalign_rate=0.1,
                           **_COMMON),
    "3 heavy": NoiseLevel(miss_rate=0.3, fp_per_frame=2.0, jitter=0.08, misalign_rate=0.2,
                          **_COMMON),
    "4 severe": NoiseLevel(miss_rate=0.4, fp_per_frame=4.0, jitter=0.12, misalign_rate=0.3,
                           **_COMMON),
}
# --sweep FACTOR: that factor takes its ladder values, every other error stays zero.
SWEEP_FIELDS = {"miss": ("miss_rate",), "fp": ("fp_per_frame",), "jitter": ("jitter",),
                "misalign": ("misalign_rate",)}


def sweep_levels(factor: str) -> dict[str, NoiseLevel]:
    """Levels that vary one factor of the ladder, the others at zero."""
    base = LEVELS["0 none"]
    out = {}
    for name, level in LEVELS.items():
        values = {f: getattr(level, f) for f in SWEEP_FIELDS[factor]}
        extra = {k: v for k, v in _COMMON.items() if k != "score_std"}
        out[f"{name.split()[0]} {factor}=" + ",".join(f"{v:g}" for v in values.values())] = \
            replace(base, **values, **extra)
    return out


def sequence_dirs(names: list[str] | None) -> list[Path]:
    """The MOT17 sequence folders, optionally filtered by name prefix (e.g. MOT17-05)."""
    dirs = sorted(p.parent.parent for p in MOT17.glob("*/gt/gt.txt"))
    if not dirs:
        raise FileNotFoundError(f"no MOT17 gt under {MOT17}; ../shared/data must sit beside "
                                "the repository")
    if names:
        dirs = [d for d in dirs if any(d.name.startswith(n) for n in names)]
        if not dirs:
            raise ValueError(f"no sequence matches {names}")
    return dirs


def parse_params(spec: str) -> dict[str, float]:
    """``"high_thresh=0.5,new_track_thresh=0.6"`` -> ByteTracker keyword arguments."""
    params = {}
    for item in filter(None, spec.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"tracker override {item!r} is not KEY=VALUE")
        params[key.strip()] = _number_or_text(value.strip())
    return params


def _number_or_text(value: str) -> float | int | bool | str:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _tracker_factory(label: str, fps: float | None = None):
    """``ours`` or ``ours:KEY=VAL,...`` -> a factory of ByteTrackers with those arguments,
    told the sequence's frame rate."""
    from pipeline.tracking import ByteTracker

    params = parse_params(label.partition(":")[2])
    return lambda: ByteTracker(fps=fps, **params)


def run_cell(task: tuple[str, NoiseLevel, str, list[Path], list[int], float | None, str]
             ) -> dict:
    """One (level, tracker) over every sequence and seed; returns COMBINED + per-sequence."""
    level_name, level, tracker, seq_dirs, seeds, target_fps, scores = task
    per_seed = []
    track_s = frames = 0.0
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            gt_root = Path(tmp) / "gt"
            for seq_dir in seq_dirs:
                info = read_seqinfo(seq_dir)
                gt = read_mot_txt(seq_dir / "gt" / "gt.txt")
                # One seed per (sequence, seed) so sequences do not share noise draws.
                dets = make_detections(gt, level, seed=seed * 1000 + _seq_number(seq_dir),
                                       num_frames=info.num_frames,
                                       image_size_wh=(info.width, info.height))
                per_frame, oracle, fps = dets.per_frame(), dets.to_mot_rows(), info.fps
                if target_fps is not None:
                    kept = subsample_frames(info.num_frames, info.fps, target_fps)
                    per_frame = [per_frame[k - 1] for k in kept]
                    oracle = renumber_rows(oracle, kept)
                    write_sequence(gt_root / seq_dir.name, renumber_rows(gt, kept),
                                   replace(info, num_frames=len(kept), fps=target_fps))
                    fps = target_fps
                per_frame = [transform_scores(d, scores) for d in per_frame]
                start = time.perf_counter()
                if tracker == "oracle":
                    rows = oracle
                elif tracker.startswith("ours"):
                    rows = run_ours(per_frame, _tracker_factory(tracker, fps))
                else:
                    rows = run_ultralytics(per_frame, tracker.removeprefix("ul-"))
                track_s += time.perf_counter() - start
                frames += len(per_frame)
                save_mot(Path(tmp) / f"{seq_dir.name}.txt", rows)
            root = gt_root if target_fps is not None else seq_dirs[0].parent
            per_seed.append(evaluate_mot_folder(root, tmp,
                                                sequences=[d.name for d in seq_dirs]))
    names = list(per_seed[0])
    mean = {seq: {k: float(np.mean([r[seq][k] for r in per_seed])) for k in KEYS}
            for seq in names}
    return {"level": level_name, "tracker": tracker, "noise": level.as_dict(),
            "seeds": seeds, "fps": target_fps, "scores": scores, "combined": mean["COMBINED"],
            "per_sequence": {k: v for k, v in mean.items() if k != "COMBINED"},
            "track_ms_per_frame": round(1000 * track_s / max(frames, 1), 3)}


def _seq_number(seq_dir: Path) -> int:
    digits = "".join(ch for ch in seq_dir.name.split("-")[1] if ch.isdigit())
    return int(digits or 0)


def markdown(results: list[dict]) -> str:
    """COMBINED table: one row per level, one IDF1/HOTA column pair per tracker."""
    trackers = list(dict.fromkeys(r["tracker"] for r in results))
    levels = list(dict.fromkeys(r["level"] for r in results))
    cell = {(r["level"], r["tracker"]): r["combined"] for r in results}
    head = "| level | " + " | ".join(f"{t} IDF1 | {t} HOTA | {t} IDSW" for t in trackers) + " |"
    lines = [head, "|---" * (1 + 3 * len(trackers)) + "|"]
    for level in levels:
        cells = []
        for t in trackers:
            m = cell[(level, t)]
            cells += [f"{100 * m['IDF1']:.1f}", f"{100 * m['HOTA']:.1f}", f"{m['IDSW']:.0f}"]
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", nargs="*", help="name prefixes, e.g. MOT17-05 (default all)")
    parser.add_argument("--levels", nargs="*", help="level numbers to run (default all)")
    parser.add_argument("--sweep", choices=sorted(SWEEP_FIELDS),
                        help="vary one factor over the ladder's values, others zero")
    parser.add_argument("--trackers", nargs="*", default=list(TRACKERS), choices=TRACKERS)
    parser.add_argument("--ours-variants", nargs="*", default=[], metavar="KEY=VAL,...",
                        help="extra rows of our tracker with these ByteTracker arguments, "
                        "e.g. high_thresh=0.5,new_track_thresh=0.6")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--score-drop", type=float, default=None,
                        help="override every level's score_drop (0 = flat scores, visibility "
                        "ignored)")
    parser.add_argument("--fps", type=float, default=None,
                        help="subsample every sequence to this frame rate")
    parser.add_argument("--scores", choices=sorted(SCORE_TRANSFORMS), default="none",
                        help="transform every detection score (another detector's scale)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()

    levels = sweep_levels(args.sweep) if args.sweep else LEVELS
    if args.levels:
        levels = {k: v for k, v in levels.items() if k.split()[0] in args.levels}
    if args.score_drop is not None:
        levels = {k: replace(v, score_drop=args.score_drop) for k, v in levels.items()}
    seq_dirs = sequence_dirs(args.sequences)
    for spec in args.ours_variants:  # bad names/values fail here, not in a worker
        try:
            _tracker_factory(f"ours:{spec}")()
        except (TypeError, ValueError) as exc:
            parser.error(f"--ours-variants {spec!r}: {exc} (ByteTracker arguments as "
                         "KEY=VALUE, e.g. high_thresh=0.5,new_track_thresh=0.6)")
    trackers = list(args.trackers) + [f"ours:{spec}" for spec in args.ours_variants]
    tasks = [(name, level, tracker, seq_dirs, args.seeds, args.fps, args.scores)
             for name, level in levels.items() for tracker in trackers]
    start = time.perf_counter()
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            results = pool.map(run_cell, tasks, chunksize=1)
    else:
        results = [run_cell(t) for t in tasks]
    elapsed = time.perf_counter() - start
    print(f"sequences: {', '.join(d.name for d in seq_dirs)}; seeds {args.seeds}; "
          f"fps {args.fps or 'native'}; scores {args.scores}; {elapsed:.0f} s\n")
    print(markdown(results))
    print("\nlevels:")
    for name, level in levels.items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in level.as_dict().items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"sequences": [d.name for d in seq_dirs],
                                         "fps": args.fps, "scores": args.scores,
                                         "seeds": args.seeds, "elapsed_s": round(elapsed, 1),
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
