"""Run-time control of the frame loop, for ``pipeline.runner``.

Stopping on SIGINT/SIGTERM, periodic housekeeping (flushing outputs, health logs of
live cameras, the pace of online association) and ending a camera's tracks after an
outage. Kept apart from the runner so the composition root stays readable.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pipeline.types import Detections, Frame, Tracklet

__all__ = ["Housekeeping", "live_cameras", "multi_camera_identities", "restart_after_gaps",
           "stop_on_signals", "stream_options_for"]

logger = logging.getLogger(__name__)


def live_cameras(config: Any, is_stream: Callable[[object], bool]) -> bool:
    """True when every camera is live; a mix of live and recorded cameras is an error."""
    flags = [is_stream(c.source) for c in config.cameras]
    if any(flags) and not all(flags):
        live = [c.id for c, f in zip(config.cameras, flags, strict=True) if f]
        raise ValueError(
            f"{config.source_file}: cameras {live} are live streams and the others recorded "
            "files; a run takes either only live cameras or only recordings.")
    return all(flags)


def stream_options_for(camera: Any, epoch_s: float,
                       overrides: Mapping[str, Any] | None = None,
                       duration_s: float | None = None) -> dict[str, Any]:
    """``StreamSource`` keyword arguments of one live camera.

    The camera's ``stream`` mapping from the config, then the run's ``overrides``
    (``RunOptions.stream_options``, for every camera), and the run's clock origin
    ``epoch_s`` (shared by all cameras, so their timestamps align). With a run
    ``duration_s``, the start-up wait for a first frame (``wait_first_s``, counted from
    ``epoch_s``) ends with the run at the latest.
    """
    options = {"epoch_s": epoch_s, **dict(getattr(camera, "stream", None) or {}),
               **dict(overrides or {})}
    if duration_s is not None:
        from pipeline.sources.stream import first_frame_wait_s

        options["wait_first_s"] = min(first_frame_wait_s(options), float(duration_s))
    return options


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
    """Periodic work of the frame loop: flushing files, health logs, association pace."""

    def __init__(self, *, flush_s: float, health_interval_s: float, camera_set: Any,
                 writers: list[Any]) -> None:
        self.flush_s = flush_s
        self.health_interval_s = health_interval_s
        self.camera_set = camera_set
        self.writers = [w for w in writers if w is not None]
        now = time.monotonic()
        self.last_flush = self.last_health = now
        self.last_association_s = float("-inf")

    def association_due(self, now_s: float, every_s: float = 1.0) -> bool:
        if now_s - self.last_association_s < every_s:
            return False
        self.last_association_s = now_s
        return True

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last_flush >= self.flush_s:
            for writer in self.writers:
                writer.flush()
            self.last_flush = now
        if self.camera_set.live and now - self.last_health >= self.health_interval_s:
            self.last_health = now
            for camera, h in self.camera_set.health().items():
                logger.info(
                    "health %s: %s, frames %d, dropped %d, stale %d, reconnects %d, open "
                    "failures %d, outage %.1f s, last frame %s s ago", camera, h["state"],
                    h["frames"], h["dropped"], h["stale"], h["reconnects"],
                    h["open_failures"], h["outage_s"], h["last_frame_age_s"])


def restart_after_gaps(tick: list[Frame], last_seen: dict[str, float],
                        trackers: dict[str, Any], builders: dict[str, Any],
                        gap_s: float) -> list[Tracklet]:
    """End the tracks of cameras that come back after an outage; returns their tracklets.

    The tracker's lost-track buffer counts frames, not seconds: after a long outage it
    would happily continue an old track with whoever stands there now. Feeding it
    empty frames expires its tracks without resetting its id counter (ids stay unique).
    """
    ended: list[Tracklet] = []
    for frame in tick:
        cid = frame.camera_id
        previous = last_seen.get(cid)
        last_seen[cid] = frame.timestamp_s
        if previous is None or frame.timestamp_s - previous < gap_s:
            continue
        logger.info("camera %s: %.1f s without frames; ending its open tracks",
                    cid, frame.timestamp_s - previous)
        for _ in range(int(getattr(trackers[cid], "max_lost_frames", 30)) + 2):
            trackers[cid].update(Detections.empty())
        ended += builders[cid].finish()
    return ended


def multi_camera_identities(global_of: Mapping[tuple[str, int], int]) -> int:
    cameras: dict[int, set[str]] = defaultdict(set)
    for (camera, _), gid in global_of.items():
        cameras[gid].add(camera)
    return sum(len(c) > 1 for c in cameras.values())
