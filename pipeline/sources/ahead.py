"""Decoding ahead: the next ticks of recorded cameras read on a thread while this one runs.

Recorded files are otherwise decoded in the frame loop, one camera after another, while
the detector and embedder wait. :class:`DecodeAhead` pulls ticks from the same iterator
on one background thread into a queue of ``depth`` ticks; OpenCV releases the GIL while
it decodes, so decoding overlaps the networks. The ticks come out in the same order
with the same frames (one producer, one FIFO queue), an error in the reader is raised in
the loop at the tick where it happened, and closing stops the thread. Live cameras do
not need it: their readers already run on threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["DecodeAhead"]

_END = object()


class DecodeAhead:
    """Iterate ``ticks`` with up to ``depth`` ticks decoded ahead on a thread.

    Args:
        ticks: The tick iterator (e.g. ``iter(CameraSet(...))``).
        depth: Ticks held ready (>= 1); memory is ``depth`` x the frames of a tick.

    Use as a context manager (or call :meth:`close`) so the thread ends with the run.
    """

    def __init__(self, ticks: Iterator[Any], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"decode_ahead depth must be >= 1, got {depth}")
        self._ticks = ticks
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="decode-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for tick in self._ticks:
                if not self._put(("tick", tick)):
                    return
        except BaseException as error:  # handed to the loop, raised there
            self._put(("error", error))
            return
        self._put(("end", _END))

    def __iter__(self) -> DecodeAhead:
        return self

    def __next__(self) -> Any:
        if self._closed.is_set():
            raise StopIteration
        kind, item = self._queue.get()
        if kind == "tick":
            return item
        self._closed.set()
        if kind == "error":
            raise item
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead (ticks not taken yet are dropped) and end the thread."""
        self._closed.set()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> DecodeAhead:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
