"""Multi-camera (MTMC) identity metrics: IDF1 / IDP / IDR over all cameras jointly.

Definition (Ristani et al. 2016, DukeMTMC; AI City Challenge MTMC track): every box is a
(camera, frame, identity, xyxy) tuple. For a gt identity ``g`` and a predicted global id
``p``, ``overlap[g, p]`` counts the (camera, frame) pairs where both have a box and their
IoU >= threshold. ONE bipartite matching between gt identities and predicted global ids,
maximising the summed overlap, is made for the whole set of cameras; then

    IDTP = sum of overlap over matched pairs
    IDFP = predicted boxes - IDTP,   IDFN = gt boxes - IDTP
    IDP = IDTP / (IDTP + IDFP),  IDR = IDTP / (IDTP + IDFN),  IDF1 = 2 IDTP / (gt + pred boxes)

So a person who keeps one global id across cameras scores fully, and one who gets a new
id in every camera only scores in the camera holding the matched id. Per-camera IDF1
repeats the computation on each camera alone (its own matching), i.e. single-camera
identity quality without cross-camera association.

File formats (CSV with a header row; extra columns are ignored):

* gt: ``camera,frame,id,x1,y1,x2,y2`` — camera is a name (string), frame an integer,
  id a positive integer consistent across cameras, boxes in pixels (x1, y1, x2, y2).
* predictions: the pipeline's trajectories CSV
  ``camera,frame,timestamp_s,global_id,track_id,x1,y1,x2,y2,score``. A row with a negative
  ``global_id`` (track never associated) is scored as its own identity
  ``(camera, track_id)``, so unassociated tracks are not merged with each other.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "GT_COLUMNS",
    "PRED_COLUMNS",
    "BoxTable",
    "MTMCResult",
    "read_gt_csv",
    "read_trajectories_csv",
    "evaluate_mtmc",
    "identity_scores",
    "add_arguments",
    "main",
]

logger = logging.getLogger(__name__)

GT_COLUMNS = ("camera", "frame", "id", "x1", "y1", "x2", "y2")
PRED_COLUMNS = ("camera", "frame", "timestamp_s", "global_id", "track_id",
                "x1", "y1", "x2", "y2", "score")


@dataclass(frozen=True)
class BoxTable:
    """Identity-labelled boxes of several cameras, row aligned.

    Attributes:
        camera: (N,) str camera names.
        frame: (N,) int64 frame indices (per camera; synchronised across cameras).
        identity: (N,) hashable identities as str (gt id, or global id of a prediction).
        xyxy: (N, 4) float64 boxes x1, y1, x2, y2 in pixels.
    """

    camera: np.ndarray
    frame: np.ndarray
    identity: np.ndarray
    xyxy: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.camera)
        if not (len(self.frame) == len(self.identity) == n) or self.xyxy.shape != (n, 4):
            raise ValueError(
                f"BoxTable fields must be row aligned: camera {len(self.camera)}, frame "
                f"{len(self.frame)}, identity {len(self.identity)}, xyxy {self.xyxy.shape}"
            )

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence]) -> BoxTable:
        """Build from (camera, frame, identity, x1, y1, x2, y2) tuples."""
        rows = list(rows)
        if not rows:
            return cls(np.zeros(0, str), np.zeros(0, np.int64), np.zeros(0, str),
                       np.zeros((0, 4)))
        cam, frame, ident, *box = zip(*rows, strict=True)
        return cls(np.array([str(c) for c in cam]), np.array(frame, dtype=np.int64),
                   np.array([str(i) for i in ident]), np.array(box, dtype=np.float64).T)

    def __len__(self) -> int:
        return len(self.camera)

    def select(self, mask: np.ndarray) -> BoxTable:
        """Rows where ``mask`` (N,) bool is true."""
        return BoxTable(self.camera[mask], self.frame[mask], self.identity[mask], self.xyxy[mask])


@dataclass(frozen=True)
class MTMCResult:
    """Result of :func:`evaluate_mtmc`.

    Attributes:
        overall: Joint cross-camera scores (IDF1, IDP, IDR, IDTP, IDFP, IDFN, GT_Dets, Dets,
            GT_IDs, IDs); rates are fractions in [0, 1].
        per_camera: Camera name -> the same keys computed on that camera alone.
    """

    overall: dict[str, float]
    per_camera: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready ``{"overall": {...}, "per_camera": {cam: {...}}}``."""
        return {"overall": dict(self.overall),
                "per_camera": {k: dict(v) for k, v in self.per_camera.items()}}


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected a header with "
                             f"{', '.join(required)}")
        return list(reader)


def read_gt_csv(path: str | Path) -> BoxTable:
    """Read a gt CSV ``camera,frame,id,x1,y1,x2,y2`` (header required)."""
    path = Path(path)
    rows = _read_csv(path, GT_COLUMNS)
    try:
        return BoxTable.from_rows(
            (r["camera"], int(r["frame"]), int(r["id"]),
             *(float(r[k]) for k in ("x1", "y1", "x2", "y2"))) for r in rows)
    except ValueError as exc:
        raise ValueError(f"{path}: malformed gt row ({exc})") from exc


def read_trajectories_csv(path: str | Path) -> BoxTable:
    """Read the pipeline's trajectories CSV into identity-labelled boxes.

    Identity is ``global_id``; rows with ``global_id < 0`` get the identity
    ``"<camera>/<track_id>"`` (one per unassociated local track).
    """
    path = Path(path)
    rows = _read_csv(path, ("camera", "frame", "global_id", "track_id", "x1", "y1", "x2", "y2"))

    def ident(r: dict[str, str]) -> str:
        gid = int(r["global_id"])
        return str(gid) if gid >= 0 else f"{r['camera']}/{int(r['track_id'])}"

    try:
        return BoxTable.from_rows(
            (r["camera"], int(r["frame"]), ident(r),
             *(float(r[k]) for k in ("x1", "y1", "x2", "y2"))) for r in rows)
    except ValueError as exc:
        raise ValueError(f"{path}: malformed trajectories row ({exc})") from exc


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of row-aligned (K, 4) xyxy boxes -> (K,)."""
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _candidate_pairs(gt: BoxTable, pred: BoxTable) -> tuple[np.ndarray, np.ndarray]:
    """All (gt row, pred row) pairs sharing a (camera, frame), without a Python frame loop."""
    cams = np.unique(np.concatenate([gt.camera, pred.camera]))
    g_key = np.searchsorted(cams, gt.camera).astype(np.int64)
    p_key = np.searchsorted(cams, pred.camera).astype(np.int64)
    keys, inv = np.unique(np.concatenate([
        np.stack([g_key, gt.frame], 1), np.stack([p_key, pred.frame], 1)]), axis=0,
        return_inverse=True)
    inv = inv.reshape(-1)
    g_code, p_code = inv[:len(gt)], inv[len(gt):]
    p_order = np.argsort(p_code, kind="stable")
    p_count = np.bincount(p_code, minlength=len(keys))
    p_start = np.concatenate([[0], np.cumsum(p_count)[:-1]])
    # Each gt row pairs with every pred row of its key: repeat it, then walk the key's block.
    reps = p_count[g_code]
    g_idx = np.repeat(np.arange(len(gt)), reps)
    offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    p_idx = p_order[np.repeat(p_start[g_code], reps) + offset]
    return g_idx, p_idx


def _check_unique(table: BoxTable, what: str) -> None:
    _, ident = np.unique(table.identity, return_inverse=True)
    cams = np.unique(table.camera, return_inverse=True)[1]
    key = np.stack([cams.reshape(-1), table.frame, ident.reshape(-1)], 1)
    uniq, counts = np.unique(key, axis=0, return_counts=True)
    if np.any(counts > 1):
        n = int(np.sum(counts > 1))
        if what == "gt":
            raise ValueError(f"gt has {n} (camera, frame, id) triple(s) with more than one box; "
                             "each identity may have one box per camera frame")
        logger.warning("%s: %d (camera, frame, id) triple(s) carry several boxes; each scores "
                       "at most one true positive, the extra boxes count as false positives",
                       what, n)


def identity_scores(gt: BoxTable, pred: BoxTable, *, iou_threshold: float = 0.5
                    ) -> dict[str, float]:
    """IDF1/IDP/IDR with one global identity matching over all rows given.

    Args:
        gt: Ground-truth boxes (any number of cameras).
        pred: Predicted boxes; identities are matched to gt identities once, jointly.
        iou_threshold: Minimum IoU of a true-positive box pair.

    Returns:
        IDF1, IDP, IDR (fractions), IDTP, IDFP, IDFN, GT_Dets, Dets, GT_IDs, IDs.
    """
    g_ids, g_lab = np.unique(gt.identity, return_inverse=True)
    p_ids, p_lab = np.unique(pred.identity, return_inverse=True)
    g_lab, p_lab = g_lab.reshape(-1), p_lab.reshape(-1)
    idtp = 0
    if len(gt) and len(pred):
        gi, pi = _candidate_pairs(gt, pred)
        hit = _pairwise_iou(gt.xyxy[gi], pred.xyxy[pi]) >= iou_threshold - 1e-12
        gi, pi = gi[hit], pi[hit]
        # One TP per (gt box, pred identity): duplicate boxes of one predicted id in a
        # camera frame must not score twice against the same gt box.
        pairs = np.unique(np.stack([gi, p_lab[pi]], 1), axis=0)
        overlap = np.zeros((len(g_ids), len(p_ids)))
        np.add.at(overlap, (g_lab[pairs[:, 0]], pairs[:, 1]), 1)
        # scipy, not geometry.linear_assignment: the score is an exact maximum-weight
        # matching, and a gated min-cost matching subtracts a constant per matched pair.
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        idtp = int(overlap[rows, cols].sum())
    n_gt, n_pred = len(gt), len(pred)
    return {
        "IDF1": 2 * idtp / max(n_gt + n_pred, 1),
        "IDP": idtp / max(n_pred, 1),
        "IDR": idtp / max(n_gt, 1),
        "IDTP": float(idtp), "IDFP": float(n_pred - idtp), "IDFN": float(n_gt - idtp),
        "GT_Dets": float(n_gt), "Dets": float(n_pred),
        "GT_IDs": float(len(g_ids)), "IDs": float(len(p_ids)),
    }


def evaluate_mtmc(
    gt: str | Path | BoxTable,
    pred: str | Path | BoxTable,
    *,
    iou_threshold: float = 0.5,
) -> MTMCResult:
    """Cross-camera IDF1 (joint identity matching) plus per-camera IDF1.

    Args:
        gt: gt CSV path (``camera,frame,id,x1,y1,x2,y2``) or a :class:`BoxTable`.
        pred: trajectories CSV path or a :class:`BoxTable` (identity = global id).
        iou_threshold: Minimum IoU of a true-positive box pair.

    Returns:
        MTMCResult with ``overall`` and ``per_camera`` score dicts. Cameras present only in
        the predictions are scored too (all their boxes are false positives).

    Raises:
        FileNotFoundError, ValueError: unreadable CSV, or a gt identity with two boxes in
            one camera frame.
    """
    gt_t = gt if isinstance(gt, BoxTable) else read_gt_csv(gt)
    pred_t = pred if isinstance(pred, BoxTable) else read_trajectories_csv(pred)
    _check_unique(gt_t, "gt")
    _check_unique(pred_t, "predictions")
    overall = identity_scores(gt_t, pred_t, iou_threshold=iou_threshold)
    per_camera = {}
    for cam in np.unique(np.concatenate([gt_t.camera, pred_t.camera])).tolist():
        per_camera[cam] = identity_scores(gt_t.select(gt_t.camera == cam),
                                          pred_t.select(pred_t.camera == cam),
                                          iou_threshold=iou_threshold)
    return MTMCResult(overall=overall, per_camera=per_camera)


def format_table(result: MTMCResult) -> str:
    """Plain-text table: the joint row first, then one row per camera (rates in percent)."""
    keys = ("IDF1", "IDP", "IDR", "IDTP", "IDFP", "IDFN", "GT_IDs", "IDs")
    rows = {"ALL (joint)": result.overall, **result.per_camera}
    width = max(len(n) for n in rows)
    lines = [f"{'':<{width}} " + " ".join(f"{k:>8}" for k in keys)]
    for name, res in rows.items():
        cells = [f"{100 * res[k]:>8.2f}" if k in ("IDF1", "IDP", "IDR") else f"{int(res[k]):>8d}"
                 for k in keys]
        lines.append(f"{name:<{width}} " + " ".join(cells))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mtmc eval mtmc``."""
    parser.add_argument("--gt", required=True, type=Path,
                        help="gt CSV with header camera,frame,id,x1,y1,x2,y2")
    parser.add_argument("--pred", required=True, type=Path, help="trajectories.csv")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold of a TP")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    """Run ``mtmc eval mtmc``; prints the results and returns 0.

    Errors (missing files, malformed rows) propagate as exceptions for the CLI to report.
    """
    result = evaluate_mtmc(args.gt, args.pred, iou_threshold=args.iou)
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_table(result))
    return 0
