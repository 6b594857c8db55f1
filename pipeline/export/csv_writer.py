"""Trajectory CSV: one row per camera, frame and tracked person.

Schema (header written once, comma separated, UTF-8, ``\\n`` line ends)::

    camera,frame,timestamp_s,global_id,track_id,x1,y1,x2,y2,score,x_m,y_m

| column | type | meaning |
|---|---|---|
| ``camera`` | str | camera id from the config (CSV-quoted if it holds a comma) |
| ``frame`` | int | 0-based frame index in that camera's source |
| ``timestamp_s`` | float, 4 decimals | seconds from the start of that camera's source |
| ``global_id`` | int | cross-camera identity (1, 2, ...); ``-1`` = not associated (yet) |
| ``track_id`` | int | per-camera track id (unique within a camera) |
| ``x1,y1,x2,y2`` | float, 2 decimals | box in that camera's image pixels (top-left, bottom-right) |
| ``score`` | float, 4 decimals | detector confidence of the box |
| ``x_m,y_m`` | float, 3 decimals, or empty | floor position (metres) of the box's foot |
| | | point (bottom centre), for cameras with a ground-plane calibration |
| | | (``pipeline.calibration``); empty for others and where the feet are out of view |

Files written before the floor columns existed (ten columns, ending at ``score``) are
still read: their rows have no floor position.

Rows are written in the order they are produced (by tick, then camera). The writer
is incremental: rows are buffered and appended with ONE write of complete lines
every ``flush_rows`` rows, every ``flush_s`` seconds (checked when rows arrive) and
on close, so the file is readable while a run goes on and a crash leaves only whole
rows.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.export.lines import LineBatchWriter
from pipeline.types import Tracks

__all__ = [
    "CSV_COLUMNS",
    "TrajectoryCsvWriter",
    "Trajectories",
    "read_trajectories",
    "rewrite_global_ids",
]

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "camera", "frame", "timestamp_s", "global_id", "track_id", "x1", "y1", "x2", "y2", "score",
    "x_m", "y_m",
)
_HEADER = ",".join(CSV_COLUMNS) + "\n"
_LEGACY_COLUMNS = CSV_COLUMNS[:10]  # files written before the floor position existed


def _columns(header: list[str] | None, path: Path) -> int:
    """Number of columns of a trajectory CSV with ``header``; ValueError if it is not one."""
    if header is not None and tuple(header) in (CSV_COLUMNS, _LEGACY_COLUMNS):
        return len(header)
    raise ValueError(f"{path}: not a trajectory CSV (header {header!r}, expected "
                     f"{','.join(CSV_COLUMNS)})")


def _floor_text(xy: np.ndarray | None, n: int) -> list[str]:
    """Per row, ``,x_m,y_m`` (3 decimals) or ``,,`` where unknown."""
    if xy is None:
        return [",,"] * n
    return [f",{x:.3f},{y:.3f}" if np.isfinite(x) and np.isfinite(y) else ",,"
            for x, y in np.asarray(xy, np.float64).reshape(-1, 2).tolist()]


def _format_rows(
    camera: str,
    frame: int,
    timestamp_s: float,
    global_ids: np.ndarray,
    track_ids: np.ndarray,
    xyxy: np.ndarray,
    score: np.ndarray,
    floor_xy: np.ndarray | None = None,
) -> list[str]:
    buffer = io.StringIO()
    camera_text = camera
    if any(c in camera for c in ',"\n\r'):
        csv.writer(buffer, lineterminator="").writerow([camera])
        camera_text = buffer.getvalue()
    lines = []
    floor = _floor_text(floor_xy, len(track_ids))
    for g, t, (x1, y1, x2, y2), s, f in zip(global_ids, track_ids, xyxy, score, floor,
                                            strict=True):
        lines.append(
            f"{camera_text},{frame},{timestamp_s:.4f},{int(g)},{int(t)},"
            f"{x1:.2f},{y1:.2f},{x2:.2f},{y2:.2f},{s:.4f}{f}\n"
        )
    return lines


class TrajectoryCsvWriter(LineBatchWriter):
    """Append trajectory rows to a CSV file incrementally (see the module docstring).

    Example:
        >>> with TrajectoryCsvWriter(out / "tracks_local.csv") as writer:
        ...     writer.write(camera="cam1", frame=0, timestamp_s=0.0, tracks=tracks)
    """

    def __init__(self, path: Path | str, *, flush_rows: int = 256, flush_s: float = 2.0) -> None:
        """Create (truncate) the file and write the header.

        Args:
            path: Output CSV; parent folders are created.
            flush_rows: Append buffered rows once this many are waiting.
            flush_s: Append buffered rows when the last append is this many seconds
                old (checked whenever rows are written).
        """
        super().__init__(path, header=_HEADER, flush_rows=flush_rows, flush_s=flush_s)

    def write(
        self,
        *,
        camera: str,
        frame: int,
        timestamp_s: float,
        tracks: Tracks,
        global_ids: Sequence[int] | np.ndarray | None = None,
        floor_xy: np.ndarray | None = None,
    ) -> int:
        """Queue one row per track of one camera frame.

        Args:
            camera: Camera id.
            frame: 0-based frame index.
            timestamp_s: Frame timestamp, seconds.
            tracks: The frame's tracks (ids, xyxy pixel boxes, scores).
            global_ids: (N,) global id per track row, or None for all ``-1``.
            floor_xy: (N, 2) floor positions in metres (NaN = unknown), or None.

        Returns:
            Number of rows queued.
        """
        n = len(tracks)
        if global_ids is None:
            gids = np.full(n, -1, np.int64)
        else:
            gids = np.asarray(global_ids, np.int64).reshape(-1)
            if gids.shape[0] != n:
                raise ValueError(f"global_ids has {gids.shape[0]} entries for {n} tracks")
        ids, xyxy, score = tracks.track_id, tracks.xyxy, tracks.score
        if floor_xy is not None and np.asarray(floor_xy).reshape(-1, 2).shape[0] != n:
            raise ValueError(f"floor_xy has {np.asarray(floor_xy).size // 2} rows for {n} tracks")
        self._queue(_format_rows(camera, frame, timestamp_s, gids, ids, xyxy, score, floor_xy))
        return n

    def write_rows(self, rows: Iterable[Sequence[object]]) -> int:
        """Queue raw rows ``(camera, frame, timestamp_s, global_id, track_id, x1, y1, x2,
        y2, score[, x_m, y_m])`` (None or NaN floor values = unknown); returns how many."""
        lines: list[str] = []
        for row in rows:
            camera, frame, ts, g, t, x1, y1, x2, y2, s = row[:10]
            floor = [np.nan if v is None else v for v in row[10:12]] or [np.nan, np.nan]
            lines += _format_rows(
                str(camera), int(frame), float(ts), np.array([g]), np.array([t]),
                np.array([[x1, y1, x2, y2]], np.float64), np.array([s], np.float64),
                np.array([floor], np.float64),
            )
        self._queue(lines)
        return len(lines)


@dataclass(eq=False)
class Trajectories:
    """The rows of a trajectory CSV as columns (row i of every array is one CSV row).

    Attributes:
        camera: (N,) str camera ids (object array).
        frame: int64 (N,) 0-based frame indices.
        timestamp_s: float64 (N,) seconds.
        global_id: int64 (N,) identities (-1 = unknown).
        track_id: int64 (N,) per-camera track ids.
        xyxy: float32 (N, 4) pixel boxes.
        score: float32 (N,) detector confidences.
        floor_xy: float64 (N, 2) floor positions in metres; NaN where unknown.
    """

    camera: np.ndarray
    frame: np.ndarray
    timestamp_s: np.ndarray
    global_id: np.ndarray
    track_id: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    floor_xy: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.floor_xy is None:
            self.floor_xy = np.full((len(self.frame), 2), np.nan)

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @property
    def cameras(self) -> list[str]:
        """Camera ids in order of first appearance."""
        return list(dict.fromkeys(self.camera.tolist()))

    def select(self, mask: np.ndarray) -> Trajectories:
        """Rows where the boolean ``mask`` (N,) is True."""
        return Trajectories(
            camera=self.camera[mask], frame=self.frame[mask], timestamp_s=self.timestamp_s[mask],
            global_id=self.global_id[mask], track_id=self.track_id[mask], xyxy=self.xyxy[mask],
            score=self.score[mask], floor_xy=self.floor_xy[mask],
        )


def read_trajectories(path: Path | str) -> Trajectories:
    """Read a trajectory CSV written by ``TrajectoryCsvWriter``.

    A file being written may be read at any time. Raises ValueError (naming the file
    and line) on a wrong header or a malformed row, FileNotFoundError if missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Trajectory CSV not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        columns = _columns(next(reader, None), path)
        cameras: list[str] = []
        numbers: list[list[float]] = []
        for line_no, row in enumerate(reader, start=2):
            if len(row) != columns:
                raise ValueError(f"{path}:{line_no}: expected {columns} fields, got {row!r}")
            try:
                numbers.append([float(v) for v in row[1:10]]
                               + [float(v) if v else np.nan for v in row[10:]]
                               + [np.nan] * (len(CSV_COLUMNS) - columns))
            except ValueError as error:
                raise ValueError(f"{path}:{line_no}: {error}") from None
            cameras.append(row[0])
    values = np.asarray(numbers, np.float64).reshape(-1, len(CSV_COLUMNS) - 1)
    return Trajectories(
        camera=np.asarray(cameras, dtype=object),
        frame=values[:, 0].astype(np.int64),
        timestamp_s=values[:, 1],
        global_id=values[:, 2].astype(np.int64),
        track_id=values[:, 3].astype(np.int64),
        xyxy=values[:, 4:8].astype(np.float32),
        score=values[:, 8].astype(np.float32),
        floor_xy=values[:, 9:11],
    )


def rewrite_global_ids(
    source: Path | str, destination: Path | str, global_of: Mapping[tuple[str, int], int]
) -> int:
    """Copy a trajectory CSV, filling ``global_id`` from ``(camera, track_id)``.

    Streams line by line (memory does not grow with the file); tracks missing from
    ``global_of`` get ``-1``. The destination is written to a temporary name and
    renamed, so it is either complete or absent.

    Returns:
        Number of data rows written.
    """
    source, destination = Path(source), Path(destination)
    temporary = destination.with_name(destination.name + ".part")
    rows = 0
    with open(source, newline="", encoding="utf-8") as src, open(
        temporary, "w", newline="", encoding="utf-8"
    ) as dst:
        reader = csv.reader(src)
        header = next(reader, None)
        _columns(header, source)
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow(header)
        for row in reader:
            row[3] = str(global_of.get((row[0], int(row[4])), -1))
            writer.writerow(row)
            rows += 1
    os.replace(temporary, destination)
    return rows
