"""Aligning several cameras by timestamp into "ticks".

A tick is the set of frames (at most one per camera) that belong to one instant.
Tick times are ``t0 + k * period`` where ``period`` is the frame period of the
FASTEST camera and ``t0`` the earliest first timestamp. A camera contributes its next
frame to a tick when that frame's timestamp lies within half a period of the tick
time; a slower camera therefore appears only in the ticks where its next frame is
due (a 5 fps camera next to a 10 fps one is in every other tick). Frames are never
duplicated to fill gaps: downstream trackers see each real frame exactly once, and a
camera missing from a tick simply has no new observation then.

Following the fastest camera keeps every frame of every camera when all rates are
constant (each frame is due at exactly one tick). Only irregular timestamps (several
frames of one camera due at one tick, e.g. a stream catching up) make a choice
necessary: the NEWEST due frame is kept (least lag) and the older ones are dropped,
counted in ``CameraSet.dropped`` and logged.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pipeline.closing import Closing
from pipeline.sources.base import FrameSource
from pipeline.sources.live import live_ticks
from pipeline.types import Frame

__all__ = ["CameraSet", "synchronise"]

logger = logging.getLogger(__name__)

_EPS_S = 1e-6  # absorbs float error in index / fps versus k * period


def synchronise(
    sources: Iterable[FrameSource], max_frames: int | None = None
) -> Iterator[list[Frame]]:
    """Yield ticks of timestamp-aligned frames until every source is exhausted.

    Args:
        sources: The cameras; camera ids must be unique.
        max_frames: Stop after this many tick periods (i.e. frames of the fastest
            camera); None runs to the end of the longest source.

    Yields:
        Non-empty lists of ``Frame``, at most one per camera, in the order of
        ``sources``; every frame's timestamp is within half a tick period of the tick
        time. Instants where no camera has a frame are skipped.

    Raises:
        ValueError: No sources, or duplicate camera ids.
    """
    yield from _ticks(list(sources), max_frames, {})


def _ticks(
    sources: list[FrameSource], max_frames: int | None, dropped: dict[str, int],
    ended: dict[str, int] | None = None,
) -> Iterator[list[Frame]]:
    """The ticks of ``synchronise``; counts dropped frames, and in ``ended`` the frames
    each camera had read when it ran out (cameras still going when the ticks stop are
    absent)."""
    _check_sources(sources)
    ended = {} if ended is None else ended
    if max_frames is not None and max_frames <= 0:
        return
    period = min(source.period_s for source in sources)
    half = period / 2
    iterators = [iter(source) for source in sources]
    read = [0] * len(sources)

    def advance(i: int) -> Frame | None:
        frame = next(iterators[i], None)
        if frame is None:
            ended.setdefault(sources[i].camera_id, read[i])
        else:
            read[i] += 1
        return frame

    pending: list[Frame | None] = [advance(i) for i in range(len(sources))]
    started = [frame for frame in pending if frame is not None]
    if not started:
        return
    t0 = min(frame.timestamp_s for frame in started)
    k = 0
    while any(frame is not None for frame in pending):
        if max_frames is not None and k >= max_frames:
            return
        tick_s = t0 + k * period
        tick: list[Frame] = []
        for i in range(len(iterators)):
            frame = pending[i]
            chosen: Frame | None = None
            while frame is not None and frame.timestamp_s <= tick_s + half + _EPS_S:
                if chosen is not None:
                    _drop(chosen, tick_s, dropped)  # superseded by a newer due frame
                if frame.timestamp_s >= tick_s - half - _EPS_S:
                    chosen = frame
                else:
                    _drop(frame, tick_s, dropped)
                    chosen = None
                frame = advance(i)
            if chosen is not None:
                tick.append(chosen)
            pending[i] = frame
        if tick:
            yield tick
            k += 1
            continue
        # Nobody was due: jump to the tick of the earliest pending frame.
        upcoming = [frame.timestamp_s for frame in pending if frame is not None]
        if upcoming:
            k = max(k + 1, math.ceil((min(upcoming) - half - t0) / period - _EPS_S))


def _drop(frame: Frame, tick_s: float, dropped: dict[str, int]) -> None:
    camera = frame.camera_id
    dropped[camera] = dropped.get(camera, 0) + 1
    logger.warning(
        "Camera %r: dropped frame %d (t=%.3f s): a newer frame is due at tick t=%.3f s",
        camera, frame.index, frame.timestamp_s, tick_s,
    )


def _check_sources(sources: Sequence[FrameSource]) -> None:
    if not sources:
        raise ValueError("A camera set needs at least one source.")
    ids = [source.camera_id for source in sources]
    duplicates = sorted({camera for camera in ids if ids.count(camera) > 1})
    if duplicates:
        raise ValueError(
            f"Duplicate camera ids {duplicates}: give every camera a unique id in the config."
        )


class CameraSet(Closing):
    """Several sources read together, tick by tick (see the module docstring).

    Iterating yields lists of ``Frame`` (one tick each). Closing the set closes every
    source. Usable as a context manager.

    With ``live=True`` (live cameras, e.g. ``StreamSource``) ticks are paced by the wall
    clock instead (``pipeline.sources.live.live_ticks``): every ``tick_period_s`` the
    newest frame of each camera that has a new one; ``max_frames`` then limits the
    number of ticks, ``duration_s`` the wall-clock time (from the sources' common
    ``epoch_s``, the run start, where they have one: the start-up wait for silent
    cameras counts, so outages never exceed the run), setting ``stop`` ends the
    iteration, and ``yield_empty`` also yields ``[]`` when no camera has a new frame
    (so the consumer can do periodic work while every camera is down). Drop counts of
    live sources are in ``health()``.

    Attributes:
        sources: The cameras, in config order.
        max_frames: Tick-period limit passed to ``synchronise`` (None = no limit).
        dropped: Per camera id, frames dropped in the last iteration (superseded by a
            newer frame due at the same tick).
        ended: Per camera id, the frames it had read when its source ran out during the
            last iteration (recorded cameras; see ``pipeline.sources.endings``).
        live: Wall-clock ticks (see above).
    """

    def __init__(
        self,
        *,
        sources: Sequence[FrameSource],
        max_frames: int | None = None,
        live: bool = False,
        duration_s: float | None = None,
        stop: threading.Event | None = None,
        yield_empty: bool = False,
    ) -> None:
        self.sources = list(sources)
        _check_sources(self.sources)
        self.max_frames = max_frames
        self.dropped: dict[str, int] = {}
        self.ended: dict[str, int] = {}
        self.live = bool(live)
        self.duration_s = duration_s
        self.stop = stop
        self.yield_empty = bool(yield_empty)
        if self.live:
            missing = [s.camera_id for s in self.sources if not hasattr(s, "latest")]
            if missing:
                raise ValueError(
                    f"Cameras {missing} are not live sources; a live camera set needs "
                    "stream cameras (rtsp://, http(s)://, webcam) only."
                )

    @property
    def camera_ids(self) -> list[str]:
        return [source.camera_id for source in self.sources]

    @property
    def tick_period_s(self) -> float:
        """Seconds between ticks: the frame period of the fastest camera."""
        return min(source.period_s for source in self.sources)

    def __iter__(self) -> Iterator[list[Frame]]:
        self.dropped, self.ended = {}, {}
        if self.live:
            return live_ticks(
                self.sources,  # type: ignore[arg-type]
                period_s=self.tick_period_s, stop=self.stop, duration_s=self.duration_s,
                max_ticks=self.max_frames, yield_empty=self.yield_empty,
                start_s=min((s.epoch_s for s in self.sources if hasattr(s, "epoch_s")),
                            default=None))
        return _ticks(self.sources, self.max_frames, self.dropped, self.ended)

    def health(self) -> dict[str, dict[str, Any]]:
        """Per camera id, the source's ``health()`` counters (live sources only)."""
        return {s.camera_id: s.health() for s in self.sources if hasattr(s, "health")}

    def close(self) -> None:
        for source in self.sources:
            source.close()

