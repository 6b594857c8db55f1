"""Single-camera MOT metrics (HOTA, CLEAR, Identity) through the ``trackeval`` package.

The metric maths is trackeval's own (``trackeval.metrics.HOTA/CLEAR/Identity/Count``);
this module only does what trackeval's ``MotChallenge2DBox`` dataset does before it:
reading MOTChallenge text files, the pedestrian/distractor preprocessing and the
per-frame IoU similarity. We build trackeval's in-memory per-sequence dict ourselves
instead of driving ``MotChallenge2DBox`` from a temporary folder tree, because that
class needs a fixed folder layout, seqmaps, a ``seqinfo.ini`` per sequence, prints to
stdout and rejects predictions with a class column other than 1 — all brittle for
pipeline output, none of it part of the metric definitions.

File format (MOTChallenge, one box per line, 1-based frames)::

    frame, id, left, top, width, height, conf, x, y, z        (predictions)
    frame, id, left, top, width, height, conf, class, visibility  (MOT17/20 gt)
    frame, id, left, top, width, height, conf, wx, wy, wz     (MOT15 gt, e.g. PETS09-S2L1)

Ground-truth preprocessing (as MotChallenge2DBox with ``DO_PREPROC``):

* ``mot17``/``mot16``/``mot20``: predictions matched (Hungarian, IoU >= 0.5) to a gt box of
  a distractor class (2 person_on_vehicle, 7 static_person, 8 distractor, 12 reflection;
  MOT20 adds 6 non_mot_vehicle) are dropped; then only gt rows with ``int(conf) != 0``
  and class 1 (pedestrian) are kept.
* ``mot15`` (no class column): only gt rows with ``int(conf) != 0`` are kept.
* ``auto``: ``mot17`` when column 8 exists and holds integers 1..12, else ``mot15``
  (MOT15 files carry world coordinates or -1 there).

All returned rates are fractions in [0, 1] (trackeval's summaries print percentages).
HOTA-family values are the mean over trackeval's 19 localisation thresholds.
"""

from __future__ import annotations

import argparse
import configparser
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from trackeval import metrics as te_metrics

__all__ = [
    "GT_FORMATS",
    "read_mot_txt",
    "evaluate_mot",
    "evaluate_mot_folder",
    "format_table",
    "add_arguments",
    "main",
]

logger = logging.getLogger(__name__)

PEDESTRIAN = 1
# MOTChallenge class ids whose matched predictions are neither TP nor FP.
_DISTRACTORS = {2, 7, 8, 12}
GT_FORMATS: dict[str, frozenset[int] | None] = {
    "mot15": None,  # no class column: only the conf (zero-marked) flag is used
    "mot16": frozenset(_DISTRACTORS),
    "mot17": frozenset(_DISTRACTORS),
    "mot20": frozenset(_DISTRACTORS | {6}),
}
_EPS = np.finfo(float).eps

# Output key -> (trackeval metric, trackeval field); HOTA arrays are averaged over alphas.
_FIELDS: dict[str, tuple[str, str]] = {
    "HOTA": ("HOTA", "HOTA"), "DetA": ("HOTA", "DetA"), "AssA": ("HOTA", "AssA"),
    "DetRe": ("HOTA", "DetRe"), "DetPr": ("HOTA", "DetPr"), "AssRe": ("HOTA", "AssRe"),
    "AssPr": ("HOTA", "AssPr"), "LocA": ("HOTA", "LocA"),
    "IDF1": ("Identity", "IDF1"), "IDP": ("Identity", "IDP"), "IDR": ("Identity", "IDR"),
    "IDTP": ("Identity", "IDTP"), "IDFP": ("Identity", "IDFP"), "IDFN": ("Identity", "IDFN"),
    "MOTA": ("CLEAR", "MOTA"), "MOTP": ("CLEAR", "MOTP"), "MODA": ("CLEAR", "MODA"),
    "IDSW": ("CLEAR", "IDSW"), "FP": ("CLEAR", "CLR_FP"), "FN": ("CLEAR", "CLR_FN"),
    "TP": ("CLEAR", "CLR_TP"), "Frag": ("CLEAR", "Frag"), "MT": ("CLEAR", "MT"),
    "PT": ("CLEAR", "PT"), "ML": ("CLEAR", "ML"),
    "GT_Dets": ("Count", "GT_Dets"), "Dets": ("Count", "Dets"),
    "GT_IDs": ("Count", "GT_IDs"), "IDs": ("Count", "IDs"),
}
TABLE_KEYS = ("HOTA", "DetA", "AssA", "IDF1", "IDP", "IDR", "MOTA", "MOTP", "IDSW", "FP", "FN",
              "GT_Dets", "GT_IDs", "IDs")

MotInput = str | Path | np.ndarray


def read_mot_txt(path: str | Path) -> np.ndarray:
    """Read a MOTChallenge text file.

    Args:
        path: Comma- (or whitespace-) separated file, one box per line.

    Returns:
        (N, C) float64 rows, C >= 6 (frame, id, left, top, width, height, ...); (0, 10) for an
        empty file.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Lines with different column counts, non-numbers or fewer than 6 columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOT file not found: {path}")
    lines = [ln.replace(",", " ").split() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return np.zeros((0, 10))
    try:
        rows = np.array(lines, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(
            f"{path}: not a MOTChallenge file (all lines need the same number of numeric "
            f"columns: frame,id,left,top,width,height,conf,...): {exc}"
        ) from exc
    return _check_rows(rows, str(path))


def _check_rows(rows: np.ndarray, what: str) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0:
        return np.zeros((0, 10))
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise ValueError(
            f"{what}: expected (N, >=6) rows frame,id,left,top,width,height,..., got shape "
            f"{rows.shape}"
        )
    return rows


def _as_rows(data: MotInput, what: str) -> np.ndarray:
    if isinstance(data, (str, Path)):
        return read_mot_txt(data)
    return _check_rows(data, what)


def _resolve_format(gt: np.ndarray, gt_format: str) -> str:
    if gt_format != "auto":
        if gt_format not in GT_FORMATS:
            raise ValueError(f"unknown gt_format {gt_format!r}; choose one of "
                             f"{['auto', *GT_FORMATS]}")
        if GT_FORMATS[gt_format] is not None and len(gt) and gt.shape[1] < 8:
            raise ValueError(f"gt_format {gt_format!r} needs a class column (8th); "
                             f"the gt has {gt.shape[1]} columns — use 'mot15'")
        return gt_format
    if len(gt) and gt.shape[1] >= 8:
        cls = gt[:, 7]
        if np.all(cls == np.round(cls)) and np.all((cls >= 1) & (cls <= 12)):
            return "mot17"
    return "mot15"


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) left-top-width-height boxes -> (N, M) float64.

    float64 and trackeval's degenerate-box conventions, so the 0.5 threshold decisions
    match the official MOTChallenge numbers bit for bit.
    """
    a1, a2 = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b1, b2 = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    wh = np.maximum(np.minimum(a2, b2) - np.maximum(a1, b1), 0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = a[:, 2] * a[:, 3]
    area_b = b[:, 2] * b[:, 3]
    union = area_a[:, None] + area_b[None, :] - inter
    inter[area_a <= _EPS, :] = 0
    inter[:, area_b <= _EPS] = 0
    inter[union <= _EPS] = 0
    union[union <= _EPS] = 1
    return inter / union


def _split_by_frame(rows: np.ndarray, frames: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(rows[:, 0], kind="stable")
    rows = rows[order]
    bounds = np.searchsorted(rows[:, 0], np.append(frames, frames[-1] + 1))
    return [rows[bounds[i]:bounds[i + 1]] for i in range(len(frames))]


def _relabel(ids_per_t: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    flat = np.concatenate(ids_per_t) if ids_per_t else np.zeros(0, np.int64)
    uniq, inv = np.unique(flat, return_inverse=True)
    splits = np.cumsum([len(x) for x in ids_per_t])[:-1]
    return [x.astype(np.int64) for x in np.split(inv, splits)], len(uniq)


def _build_sequence(
    gt: np.ndarray, pred: np.ndarray, fmt: str, num_frames: int | None, name: str
) -> dict:
    """trackeval's preprocessed per-sequence dict (see MotChallenge2DBox)."""
    all_frames = np.concatenate([gt[:, 0], pred[:, 0]]).astype(np.int64)
    last = max(int(all_frames.max(initial=0)), num_frames or 0)
    if num_frames is not None and len(pred) and pred[:, 0].max() > num_frames:
        logger.warning("%s: predictions beyond seqLength %d (up to frame %d) count as FP",
                       name, num_frames, int(pred[:, 0].max()))
    # Every frame is a timestep, empty ones too: CLEAR's track-continuation rule depends on it.
    frames = np.arange(min(int(all_frames.min(initial=1)), 1), last + 1)
    distractors = GT_FORMATS[fmt]
    gt_t, pred_t = _split_by_frame(gt, frames), _split_by_frame(pred, frames)
    gt_ids, tr_ids, sims = [], [], []
    for frame, g, p in zip(frames, gt_t, pred_t, strict=True):
        for ids, who in ((g[:, 1], "gt"), (p[:, 1], "predictions")):
            uniq, counts = np.unique(ids, return_counts=True)
            if np.any(counts > 1):
                raise ValueError(f"{name}: {who} repeat id(s) {uniq[counts > 1].astype(int)} "
                                 f"in frame {frame}; ids must be unique per frame")
        sim = _iou_xywh(g[:, 2:6], p[:, 2:6])
        if distractors is not None and len(g) and len(p):
            scores = np.where(sim < 0.5 - _EPS, 0.0, sim)
            rows, cols = linear_sum_assignment(-scores)
            hit = scores[rows, cols] > _EPS
            is_distr = np.isin(g[rows[hit], 7].astype(np.int64), list(distractors))
            keep_p = np.ones(len(p), bool)
            keep_p[cols[hit][is_distr]] = False
            p, sim = p[keep_p], sim[:, keep_p]
        keep_g = g[:, 6].astype(np.int64) != 0 if g.shape[1] > 6 else np.ones(len(g), bool)
        if distractors is not None:
            keep_g &= g[:, 7].astype(np.int64) == PEDESTRIAN
        gt_ids.append(g[keep_g, 1])
        tr_ids.append(p[:, 1])
        sims.append(sim[keep_g])
    gt_ids, n_gt = _relabel(gt_ids)
    tr_ids, n_tr = _relabel(tr_ids)
    return {
        "seq": name, "num_timesteps": len(frames),
        "gt_ids": gt_ids, "tracker_ids": tr_ids, "similarity_scores": sims,
        "num_gt_ids": n_gt, "num_tracker_ids": n_tr,
        "num_gt_dets": int(sum(len(x) for x in gt_ids)),
        "num_tracker_dets": int(sum(len(x) for x in tr_ids)),
    }


def _metrics(threshold: float) -> dict[str, object]:
    cfg = {"THRESHOLD": threshold, "PRINT_CONFIG": False}
    return {"HOTA": te_metrics.HOTA(), "CLEAR": te_metrics.CLEAR(dict(cfg)),
            "Identity": te_metrics.Identity(dict(cfg)), "Count": te_metrics.Count()}


def _flatten(raw: dict[str, dict]) -> dict[str, float]:
    out = {}
    for key, (metric, field) in _FIELDS.items():
        out[key] = float(np.mean(raw[metric][field]))
    return out


def evaluate_mot(
    gt: MotInput,
    pred: MotInput,
    *,
    gt_format: str = "auto",
    num_frames: int | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """HOTA, CLEAR and Identity metrics of one sequence.

    Args:
        gt: MOTChallenge gt file or (N, >=6) rows ``frame,id,left,top,width,height[,conf,
            class,...]`` (pixels; without a conf column every row counts).
        pred: Prediction file or (M, >=6) rows in the same layout (columns beyond 6 ignored).
        gt_format: 'auto', 'mot15', 'mot16', 'mot17' or 'mot20' (see module docstring).
        num_frames: Sequence length (seqLength); default: the last frame in gt or pred.
        iou_threshold: IoU for a CLEAR/Identity true positive (HOTA uses its own 19).

    Returns:
        Flat dict of floats: HOTA, DetA, AssA, DetRe, DetPr, AssRe, AssPr, LocA, IDF1, IDP,
        IDR, IDTP, IDFP, IDFN, MOTA, MOTP, MODA, IDSW, FP, FN, TP, Frag, MT, PT, ML,
        GT_Dets, Dets, GT_IDs, IDs (rates as fractions, counts as whole numbers).

    Raises:
        FileNotFoundError, ValueError: unreadable input, duplicate ids in a frame,
            unknown gt_format.
    """
    return _evaluate(gt, pred, gt_format, num_frames, iou_threshold, "sequence")[1]


def _evaluate(gt, pred, gt_format, num_frames, iou_threshold, name) -> tuple[dict, dict]:
    gt_rows, pred_rows = _as_rows(gt, f"{name} gt"), _as_rows(pred, f"{name} predictions")
    fmt = _resolve_format(gt_rows, gt_format)
    logger.debug("%s: gt format %s", name, fmt)
    data = _build_sequence(gt_rows, pred_rows, fmt, num_frames, name)
    raw = {k: m.eval_sequence(data) for k, m in _metrics(iou_threshold).items()}
    return raw, _flatten(raw)


def _seq_length(seq_dir: Path) -> int | None:
    ini = seq_dir / "seqinfo.ini"
    if not ini.is_file():
        return None
    parser = configparser.ConfigParser()
    parser.read(ini)
    value = parser.get("Sequence", "seqLength", fallback=None)
    return int(value) if value else None


def evaluate_mot_folder(
    gt_root: str | Path,
    pred_root: str | Path,
    *,
    sequences: Sequence[str] | None = None,
    gt_format: str = "auto",
    iou_threshold: float = 0.5,
) -> dict[str, dict[str, float]]:
    """Evaluate several sequences in MOTChallenge layout.

    Args:
        gt_root: Folder of sequences ``gt_root/SEQ/gt/gt.txt`` (optional
            ``gt_root/SEQ/seqinfo.ini`` gives seqLength).
        pred_root: Folder with one ``pred_root/SEQ.txt`` per sequence.
        sequences: Names to evaluate; default every ``SEQ`` with a ``gt/gt.txt``.
        gt_format: As in :func:`evaluate_mot`, applied to every sequence.
        iou_threshold: As in :func:`evaluate_mot`.

    Returns:
        ``{SEQ: metrics, ..., "COMBINED": metrics}``; COMBINED is trackeval's
        ``combine_sequences`` (counts summed, HOTA/IDF1/MOTA recomputed from them).

    Raises:
        FileNotFoundError: No sequences under gt_root, or a prediction file is missing.
    """
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    if sequences is None:
        sequences = sorted(p.parent.parent.name for p in gt_root.glob("*/gt/gt.txt"))
    if not sequences:
        raise FileNotFoundError(f"no sequences (SEQ/gt/gt.txt) under {gt_root}")
    raws: dict[str, dict] = {}
    out: dict[str, dict[str, float]] = {}
    for seq in sequences:
        pred_file = pred_root / f"{seq}.txt"
        if not pred_file.is_file():
            raise FileNotFoundError(f"no predictions for sequence {seq}: expected {pred_file}")
        raws[seq], out[seq] = _evaluate(gt_root / seq / "gt" / "gt.txt", pred_file, gt_format,
                                        _seq_length(gt_root / seq), iou_threshold, seq)
    metrics = _metrics(iou_threshold)
    combined = {k: m.combine_sequences({s: r[k] for s, r in raws.items()})
                for k, m in metrics.items()}
    out["COMBINED"] = _flatten(combined)
    return out


def format_table(results: dict[str, dict[str, float]], keys: Sequence[str] = TABLE_KEYS) -> str:
    """Plain-text table, one row per sequence; rates in percent like MOTChallenge."""
    counts = {"IDSW", "FP", "FN", "TP", "GT_Dets", "Dets", "GT_IDs", "IDs", "IDTP", "IDFP",
              "IDFN", "Frag", "MT", "PT", "ML"}
    width = max([8, *(len(n) for n in results)])
    lines = [f"{'':<{width}} " + " ".join(f"{k:>8}" for k in keys)]
    for name, res in results.items():
        cells = [f"{int(res[k]):>8d}" if k in counts else f"{100 * res[k]:>8.2f}" for k in keys]
        lines.append(f"{name:<{width}} " + " ".join(cells))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mtmc eval mot``."""
    parser.add_argument("--gt", required=True, type=Path,
                        help="gt.txt, a sequence folder (SEQ/gt/gt.txt) or a folder of sequences")
    parser.add_argument("--pred", required=True, type=Path,
                        help="prediction .txt (one sequence) or a folder of SEQ.txt files")
    parser.add_argument("--gt-format", default="auto", choices=["auto", *GT_FORMATS],
                        help="gt class convention (default: auto-detect)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold (CLEAR/IDF1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    """Run ``mtmc eval mot``; prints the results and returns 0.

    Errors (missing files, malformed rows) propagate as exceptions for the CLI to report.
    """
    gt, pred = Path(args.gt), Path(args.pred)
    kw = {"gt_format": args.gt_format, "iou_threshold": args.iou}
    if gt.is_file() or (gt / "gt" / "gt.txt").is_file():
        seq_dir = gt.parent.parent if gt.is_file() else gt
        gt_file = gt if gt.is_file() else gt / "gt" / "gt.txt"
        name = seq_dir.name if gt_file.parent.name == "gt" else gt_file.stem
        pred_file = pred / f"{name}.txt" if pred.is_dir() else pred
        num_frames = _seq_length(seq_dir) if gt_file.parent.name == "gt" else None
        results = {name: evaluate_mot(gt_file, pred_file, num_frames=num_frames, **kw)}
    elif pred.is_dir():
        results = evaluate_mot_folder(gt, pred, **kw)
    else:
        raise FileNotFoundError(f"--gt {gt} is a folder of sequences, so --pred must be a "
                                f"folder of SEQ.txt files (got {pred})")
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 0
