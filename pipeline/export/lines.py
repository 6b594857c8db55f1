"""Crash-safe incremental text output shared by the CSV, MOT and revision writers.

Lines are queued and appended in batches — when ``flush_rows`` lines wait, when the
last append is ``flush_s`` old (checked whenever lines are queued), and on close —
each batch as one write to an unbuffered file, so a killed process leaves only whole
lines behind.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from types import TracebackType
from typing import TypeVar

__all__ = ["LineBatchWriter"]

_W = TypeVar("_W", bound="LineBatchWriter")


class LineBatchWriter:
    """Append whole lines to a file in batches (see the module docstring)."""

    def __init__(self, path: Path | str, *, header: str | None = None, flush_rows: int = 256,
                 flush_s: float = 2.0) -> None:
        """Create (truncate) ``path`` (parents too) and write ``header`` if given.

        Args:
            path: Output file.
            header: First line(s), ending in a newline.
            flush_rows: Append queued lines once this many are waiting (>= 1).
            flush_s: Append queued lines when the last append is this old (>= 0).
        """
        if flush_rows < 1 or flush_s < 0:
            raise ValueError(
                f"flush_rows must be >= 1 and flush_s >= 0, got {flush_rows}, {flush_s}"
            )
        self.path = Path(path)
        self.flush_rows = int(flush_rows)
        self.flush_s = float(flush_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: io.RawIOBase | None = open(self.path, "wb", buffering=0)  # noqa: SIM115
        self._pending: list[str] = []
        self._last_flush = time.monotonic()
        self.rows_written = 0
        if header:
            self._write_text(header)

    def _queue(self, lines: list[str]) -> None:
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._pending += lines
        stale = time.monotonic() - self._last_flush >= self.flush_s
        if len(self._pending) >= self.flush_rows or (stale and self._pending):
            self.flush()

    def flush(self) -> None:
        """Append every queued line now (one write of whole lines)."""
        if self._file is not None and self._pending:
            lines, self._pending = self._pending, []
            self._write_text("".join(lines))
            self.rows_written += len(lines)
        self._last_flush = time.monotonic()

    def _write_text(self, text: str) -> None:
        assert self._file is not None
        data = memoryview(text.encode("utf-8"))
        while data:  # raw writes may be partial (e.g. signals); finish the batch
            written = self._file.write(data)
            data = data[written or 0 :]

    def close(self) -> None:
        """Flush and close (safe to call twice)."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            self._file.close()
            self._file = None

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
