"""MOTChallenge text files: one per camera, ``frame,id,x,y,w,h,conf,-1,-1,-1``.

``frame`` is 1-based (frame index 0 of a source is MOT frame 1), ``id`` the
per-camera track id, ``x,y,w,h`` the box's top-left corner and size in pixels
(2 decimals), ``conf`` the detection score (4 decimals); the last three columns are
the unused world coordinates. This is what TrackEval and the MOTChallenge devkit read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.export.lines import LineBatchWriter
from pipeline.geometry import tlwh_to_xyxy, xyxy_to_tlwh
from pipeline.types import Tracks

__all__ = ["MotWriter", "MotFrame", "read_mot"]


class MotWriter(LineBatchWriter):
    """Write one camera's tracks as a MOTChallenge result file.

    Rows are appended in whole-line batches (every ``flush_rows`` rows, every
    ``flush_s`` seconds and on close). Parent folders are created.
    """

    def __init__(self, path: Path | str, *, flush_rows: int = 512, flush_s: float = 2.0) -> None:
        super().__init__(path, flush_rows=flush_rows, flush_s=flush_s)

    def write(self, frame_index: int, tracks: Tracks) -> int:
        """Queue the tracks of one frame.

        Args:
            frame_index: 0-based frame index in the source (written as index + 1).
            tracks: The frame's tracks (xyxy pixel boxes).

        Returns:
            Number of rows queued.
        """
        return self.write_boxes(frame_index, tracks.track_id, tracks.xyxy, tracks.score)

    def write_boxes(
        self, frame_index: int, ids: np.ndarray, xyxy: np.ndarray, score: np.ndarray
    ) -> int:
        """Queue rows from arrays: ids int (N,), xyxy float (N, 4) pixels, score (N,)."""
        tlwh = xyxy_to_tlwh(xyxy)
        frame = int(frame_index) + 1
        self._queue([
            f"{frame},{int(track_id)},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{conf:.4f},-1,-1,-1\n"
            for track_id, (x, y, w, h), conf in zip(ids, tlwh, score, strict=True)
        ])
        return len(ids)


@dataclass(eq=False)
class MotFrame:
    """The rows of one MOT frame.

    Attributes:
        ids: int64 (N,) track (or ground-truth) ids.
        xyxy: float32 (N, 4) pixel boxes.
        score: float32 (N,) the ``conf`` column.
    """

    ids: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def read_mot(path: Path | str) -> dict[int, MotFrame]:
    """Read a MOTChallenge txt file (results or gt) into per-frame arrays.

    Returns:
        ``{frame: MotFrame}`` keyed by the file's 1-based frame numbers, ascending;
        frames without rows are absent. Extra columns (visibility, class, world
        coordinates) are ignored.

    Raises:
        FileNotFoundError: Missing file. ValueError: fewer than 7 columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOT file not found: {path}")
    if path.stat().st_size == 0:
        return {}
    table = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    if table.shape[1] < 7:
        raise ValueError(f"{path}: MOT rows need at least 7 columns, got {table.shape[1]}")
    frames = table[:, 0].astype(np.int64)
    order = np.argsort(frames, kind="stable")
    table, frames = table[order], frames[order]
    out: dict[int, MotFrame] = {}
    starts = np.flatnonzero(np.r_[True, frames[1:] != frames[:-1]])
    ends = np.r_[starts[1:], len(frames)]
    for start, end in zip(starts, ends, strict=True):
        rows = table[start:end]
        out[int(frames[start])] = MotFrame(
            ids=rows[:, 1].astype(np.int64),
            xyxy=tlwh_to_xyxy(rows[:, 2:6]),
            score=rows[:, 6].astype(np.float32),
        )
    return out
