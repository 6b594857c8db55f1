"""The frame-source contract shared by every source type."""

from __future__ import annotations

import abc
from collections.abc import Iterator

from pipeline.closing import Closing
from pipeline.types import Frame

__all__ = ["FrameSource"]


class FrameSource(Closing, abc.ABC):
    """A finite or endless stream of BGR frames from one camera.

    Iterating yields ``Frame`` objects with 0-based ``index`` and ``timestamp_s``
    (seconds since the start of the source). Iterating again restarts from the first
    frame where the source can (files, folders). Sources are context managers;
    ``close()`` releases the underlying handle and is idempotent.

    Attributes:
        camera_id: Camera name, copied into every ``Frame``.
        fps: Frames per second used for timestamps (> 0).
        frame_count: Number of frames, or None when unknown (live streams).
        size_wh: (width, height) of the frames, pixels.
    """

    camera_id: str
    fps: float
    frame_count: int | None
    size_wh: tuple[int, int]

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames in order."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the underlying resources (safe to call twice)."""

    @property
    def period_s(self) -> float:
        """Seconds between consecutive frames (1 / fps)."""
        return 1.0 / self.fps


    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(camera_id={self.camera_id!r}, fps={self.fps:g}, "
            f"frame_count={self.frame_count}, size_wh={self.size_wh})"
        )


def check_fps(fps: float | None, camera_id: str, what: str) -> float:
    """Validate an fps value, raising a message that names the camera and source."""
    if fps is None or not fps > 0 or fps != fps:
        raise ValueError(
            f"Camera {camera_id!r}: no valid frame rate for {what} (got {fps!r}); "
            "pass fps=<frames per second> for this camera."
        )
    return float(fps)
