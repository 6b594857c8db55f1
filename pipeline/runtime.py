"""Run-time control of the frame loop, for ``pipeline.runner``.

Stopping on SIGINT/SIGTERM, periodic housekeeping (flushing outputs, health logs of
live cameras) and per-stage timing. Kept apart from the runner so the composition root
stays readable.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Housekeeping", "StageTimer", "live_cameras", "stop_on_signals"]

logger = logging.getLogger(__name__)


@dataclass
class StageTimer:
    """Wall-clock milliseconds spent per pipeline stage."""

    totals_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals_ms[stage] += (time.perf_counter() - start) * 1000.0


def live_cameras(config: Any, is_stream: Callable[[object], bool]) -> bool:
    """True when every camera is live; a mix of live and recorded cameras is an error."""
    flags = [is_stream(c.source) for c in config.cameras]
    if any(flags) and not all(flags):
        live = [c.id for c, f in zip(config.cameras, flags, strict=True) if f]
        raise ValueError(
            f"{config.source_file}: cameras {live} are live streams and the others recorded "
            "files; a run takes either only live cameras or only recordings.")
    return all(flags)


@contextmanager
def stop_on_signals(stop: threading.Event, enabled: bool) -> Iterator[list[str]]:
    """While active, SIGINT/SIGTERM set ``stop`` (a second SIGINT interrupts at once).

    Yields the list the names of the signals received are appended to.
    """
    received: list[str] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(name)
        stop.set()
        logger.warning("%s received: stopping after the current tick (Ctrl-C again to "
                       "abort at once)", name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Housekeeping:
    """Periodic work of the frame loop: flushing the outputs, health logs of live cameras.

    Args:
        flush_s: Longest time written rows stay in memory.
        health_interval_s: Seconds between health log lines of live cameras.
        camera_set: The ``CameraSet`` (``live`` flag and ``health()``).
        sinks: The outputs (``flush()``).
    """

    def __init__(self, *, flush_s: float, health_interval_s: float, camera_set: Any,
                 sinks: Any) -> None:
        self.flush_s = flush_s
        self.health_interval_s = health_interval_s
        self.camera_set = camera_set
        self.sinks = sinks
        now = time.monotonic()
        self.last_flush = self.last_health = now

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last_flush >= self.flush_s:
            self.sinks.flush()
            self.last_flush = now
        if self.camera_set.live and now - self.last_health >= self.health_interval_s:
            self.last_health = now
            for camera, h in self.camera_set.health().items():
                logger.info(
                    "health %s: %s, frames %d, dropped %d, stale %d, reconnects %d, open "
                    "failures %d, outage %.1f s, last frame %s s ago", camera, h["state"],
                    h["frames"], h["dropped"], h["stale"], h["reconnects"],
                    h["open_failures"], h["outage_s"], h["last_frame_age_s"])
