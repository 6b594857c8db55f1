"""Frames from a video file, decoded with OpenCV."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2

from pipeline.sources.base import FrameSource, check_fps
from pipeline.sources.native_logs import quiet_native_logs
from pipeline.types import Frame

__all__ = ["VideoFileSource"]

logger = logging.getLogger(__name__)


class VideoFileSource(FrameSource):
    """A video file (any container/codec this OpenCV build decodes).

    Timestamps are ``index / fps``. The frame rate comes from the file unless
    overridden: containers sometimes carry a wrong rate (MOTChallenge says PETS09
    S2L1 is 7 fps; ``vtest.avi`` plays at 10, which its header states).
    """

    def __init__(self, *, camera_id: str, path: Path | str, fps: float | None = None) -> None:
        """Open the file and read its properties.

        Args:
            camera_id: Camera name put in every frame.
            path: Video file.
            fps: Frame rate override; None uses the rate stored in the file.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: ``path`` is a folder, cannot be decoded, holds no frame, or
                has no frame rate and none was given.
        """
        quiet_native_logs()  # the project's messages, not FFmpeg's, describe bad files
        self.camera_id = camera_id
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(
                f"Camera {camera_id!r}: video file not found: {self.path}. Check the "
                "source path in the config."
            )
        if self.path.is_dir():
            raise ValueError(
                f"Camera {camera_id!r}: {self.path} is a folder, not a video file; use an "
                "image-folder source for folders of frames."
            )
        self._capture = self._open()
        file_fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = check_fps(fps if fps is not None else file_fps, camera_id, str(self.path))
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        # Some containers (e.g. streamed webm) report no count; None means "unknown".
        self.frame_count = count if count > 0 else None
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise ValueError(
                f"Camera {camera_id!r}: {self.path} opened but no frame could be decoded; "
                "the file is empty, truncated or uses a codec this OpenCV build lacks "
                "(re-encode it, e.g. to H.264 MP4 or MJPEG AVI)."
            )
        self.size_wh = (int(first.shape[1]), int(first.shape[0]))
        self._first = first
        logger.debug("Opened %r", self)

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise ValueError(
                f"Camera {self.camera_id!r}: cannot open {self.path} as a video (not a "
                "video file, or a format this OpenCV build cannot read)."
            )
        return capture

    def __iter__(self) -> Iterator[Frame]:
        if self._capture is None:
            raise ValueError(f"Camera {self.camera_id!r}: source {self.path} is closed.")
        if self._first is None:
            # A second pass: reopen, because seeking is unreliable in some codecs.
            self._capture.release()
            self._capture = self._open()
        index = 0
        while True:
            if self._first is not None:
                image, self._first = self._first, None
            else:
                ok, image = self._capture.read()
                if not ok or image is None:
                    break
            yield Frame(
                camera_id=self.camera_id,
                index=index,
                timestamp_s=index / self.fps,
                image_bgr=image,
            )
            index += 1
        # Whether that is too early is judged with the other cameras in view
        # (pipeline.sources.endings), which warns once.
        logger.debug("Camera %r: %s ended after %d frames (container: %s)",
                     self.camera_id, self.path, index, self.frame_count)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._first = None
