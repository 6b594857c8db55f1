"""Ticks of live cameras, paced by the wall clock.

Recorded footage is aligned by its timestamps (``synchronise``); live cameras cannot be
waited for — a camera may be down for minutes. ``live_ticks`` therefore wakes every
``period_s`` seconds of wall-clock time and takes the NEWEST frame each camera has
produced since the previous tick (older ones are dropped and counted by the source).
Cameras without a new frame are simply absent from that tick. When processing falls
behind, the next tick starts at once and the schedule is not caught up (no burst of
ticks), so the pipeline always works on the freshest frames.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

from pipeline.types import Frame

__all__ = ["LiveSource", "live_ticks"]


class LiveSource(Protocol):
    """What ``live_ticks`` needs of a source (``StreamSource`` has it)."""

    camera_id: str

    def latest(self) -> Frame | None:
        """Newest frame not yet taken, or None."""


def live_ticks(
    sources: Sequence[LiveSource],
    *,
    period_s: float,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    max_ticks: int | None = None,
    yield_empty: bool = False,
    start_s: float | None = None,
) -> Iterator[list[Frame]]:
    """Yield ticks of the newest frame per camera until stopped.

    Args:
        sources: Live sources (each with ``latest()``), in config order.
        period_s: Wall-clock seconds between ticks (> 0), e.g. the fastest camera's
            frame period.
        stop: Setting this event ends the iteration at the next tick.
        duration_s: End after this many wall-clock seconds (None = no limit).
        max_ticks: End after this many non-empty ticks (None = no limit).
        yield_empty: Also yield ``[]`` when no camera has a new frame, so a consumer
            can do periodic work (health logs, flushing) while every camera is down.
        start_s: ``time.monotonic()`` value ``duration_s`` counts from, e.g. the run
            start before the cameras were opened (None = when iteration begins).

    Yields:
        Lists of ``Frame`` (at most one per camera, in the order of ``sources``).
    """
    if period_s <= 0:
        raise ValueError(f"live tick period must be > 0 s, got {period_s}")
    next_tick = time.monotonic()
    start = next_tick if start_s is None else min(float(start_s), next_tick)
    ticks = 0
    while stop is None or not stop.is_set():
        now = time.monotonic()
        if duration_s is not None and now - start >= duration_s:
            return
        if max_ticks is not None and ticks >= max_ticks:
            return
        if now < next_tick:
            wait = next_tick - now
            if duration_s is not None:
                wait = min(wait, max(0.0, start + duration_s - now))
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
            continue
        # Behind schedule: do not replay the missed ticks.
        next_tick = max(next_tick + period_s, now)
        tick = [frame for frame in (s.latest() for s in sources) if frame is not None]
        if tick:
            ticks += 1
            yield tick
        elif yield_empty:
            yield tick
