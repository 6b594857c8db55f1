"""``revisions.csv``: how online association assigned and revised global ids.

Schema (header written once, comma separated, UTF-8, ``\\n`` line ends)::

    time_s,camera,track_id,old_global_id,new_global_id

One row each time a tracklet ``(camera, track_id)`` receives a global id
(``old_global_id = -1``) or has it changed, at ``time_s`` (the run clock, as
``timestamp_s`` in ``trajectories.csv``). Rows are in the order the decisions were
made. The FINAL global id of a tracklet is ``new_global_id`` of its LAST row; apply it
to every ``trajectories.csv`` row of that ``(camera, track_id)`` (rows written before
a decision carry the id known then, ``-1`` before the first). A revision happens at
most the association's ``lag_s`` after the first assignment, so ids in rows older
than that are final.

Rows are appended with one write of whole lines at least every ``flush_s`` seconds
(and on close), like the trajectory CSV, so a killed run leaves whole rows only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.export.lines import LineBatchWriter

__all__ = ["REVISION_COLUMNS", "RevisionCsvWriter", "read_revisions", "final_global_ids"]

REVISION_COLUMNS = ("time_s", "camera", "track_id", "old_global_id", "new_global_id")


def _camera_text(camera: str) -> str:
    if not any(c in camera for c in ',"\n\r'):
        return camera
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([camera])
    return buffer.getvalue()


class RevisionCsvWriter(LineBatchWriter):
    """Append revision rows incrementally (see the module docstring)."""

    def __init__(self, path: Path | str, *, flush_s: float = 2.0) -> None:
        """Create (truncate) ``path`` and write the header; ``flush_s`` >= 0."""
        super().__init__(path, header=",".join(REVISION_COLUMNS) + "\n", flush_s=flush_s)

    def write(self, revisions: Iterable[Any]) -> int:
        """Queue revisions (objects with the five schema attributes); returns how many."""
        lines = [
            f"{r.time_s:.4f},{_camera_text(str(r.camera))},{int(r.track_id)},"
            f"{int(r.old_global_id)},{int(r.new_global_id)}\n"
            for r in revisions
        ]
        self._queue(lines)
        return len(lines)


def read_revisions(path: Path | str) -> list[tuple[float, str, int, int, int]]:
    """Rows of a revisions CSV as ``(time_s, camera, track_id, old, new)`` tuples.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Wrong header or a malformed row (names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Revisions CSV not found: {path}")
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != REVISION_COLUMNS:
            raise ValueError(f"{path}: not a revisions CSV (header {header!r})")
        for line_no, row in enumerate(reader, start=2):
            try:
                time_s, camera, track, old, new = row
                rows.append((float(time_s), camera, int(track), int(old), int(new)))
            except ValueError:
                raise ValueError(f"{path}:{line_no}: malformed row {row!r}") from None
    return rows


def final_global_ids(path: Path | str) -> dict[tuple[str, int], int]:
    """``(camera, track_id) -> final global id``: the last revision of each tracklet."""
    return {(camera, track): new for _, camera, track, _, new in read_revisions(path)}
