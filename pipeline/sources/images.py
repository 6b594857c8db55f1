"""Frames from a folder of still images (e.g. MOTChallenge ``img1/``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pipeline.sources.base import FrameSource, check_fps
from pipeline.sources.native_logs import quiet_native_logs
from pipeline.types import Frame

__all__ = ["ImageFolderSource", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""File suffixes (case-insensitive) read as frames."""


class ImageFolderSource(FrameSource):
    """The image files of one folder, in sorted file-name order.

    Names should sort in time order (zero-padded numbers such as ``000001.jpg``).
    Timestamps are ``index / fps``. Every image must have the size of the first.
    """

    def __init__(self, *, camera_id: str, path: Path | str, fps: float) -> None:
        """List the folder and read the first image.

        Args:
            camera_id: Camera name put in every frame.
            path: Folder holding the images (not searched recursively).
            fps: Frame rate the images were captured at.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: ``path`` is not a folder, holds no image, the first image
                cannot be read, or ``fps`` is not positive.
        """
        quiet_native_logs()  # a bad image is reported by _read, not by OpenCV's own line
        self.camera_id = camera_id
        self.path = Path(path)
        self.fps = check_fps(fps, camera_id, f"image folder {self.path}")
        if not self.path.exists():
            raise FileNotFoundError(
                f"Camera {camera_id!r}: image folder not found: {self.path}. Check the "
                "source path in the config."
            )
        if not self.path.is_dir():
            raise ValueError(f"Camera {camera_id!r}: {self.path} is not a folder.")
        self.files = sorted(
            p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.files:
            raise ValueError(
                f"Camera {camera_id!r}: no {'/'.join(IMAGE_SUFFIXES)} images in {self.path}; "
                "point the source at the folder that holds the frames."
            )
        self.frame_count = len(self.files)
        first = self._read(self.files[0])
        self.size_wh = (int(first.shape[1]), int(first.shape[0]))
        self._closed = False

    def _read(self, file: Path) -> np.ndarray:
        """uint8 (H, W, 3) BGR image of ``file``."""
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(
                f"Camera {self.camera_id!r}: cannot read image {file} (corrupt or not an "
                "image); remove or replace it."
            )
        return image

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise ValueError(f"Camera {self.camera_id!r}: source {self.path} is closed.")
        for index, file in enumerate(self.files):
            image = self._read(file)
            if (image.shape[1], image.shape[0]) != self.size_wh:
                raise ValueError(
                    f"Camera {self.camera_id!r}: {file} is {image.shape[1]}x{image.shape[0]}, "
                    f"the folder's first image is {self.size_wh[0]}x{self.size_wh[1]}; all "
                    "frames of a camera must have one size."
                )
            yield Frame(
                camera_id=self.camera_id,
                index=index,
                timestamp_s=index / self.fps,
                image_bgr=image,
            )

    def close(self) -> None:
        self._closed = True
