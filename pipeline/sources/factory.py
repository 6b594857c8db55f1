"""Choosing a source type from a URI: ``SOURCES`` and ``open_source``."""

from __future__ import annotations

import configparser
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.sources.base import FrameSource
from pipeline.sources.images import ImageFolderSource
from pipeline.sources.stream import StreamSource, is_stream_uri, redact_url
from pipeline.sources.video import VideoFileSource

__all__ = ["SOURCES", "open_source"]

logger = logging.getLogger(__name__)

SOURCES: dict[str, type[FrameSource]] = {
    "video": VideoFileSource,
    "images": ImageFolderSource,
    "stream": StreamSource,
}
"""Source types by name; ``open_source`` picks one from what the URI points at."""

# Stream protocols FFmpeg reads but StreamSource has not been tested with.
_UNTESTED_SCHEMES = ("rtmp", "udp", "tcp", "srt")


def open_source(
    *,
    camera_id: str,
    uri: str | Path | int,
    fps: float | None = None,
    stream_options: Mapping[str, Any] | None = None,
) -> FrameSource:
    """Open the right source for ``uri``.

    * an existing file -> ``VideoFileSource`` (``fps`` overrides the file's rate);
    * an existing folder -> ``ImageFolderSource``; ``fps`` is required unless the
      folder is a MOTChallenge ``img1/`` whose parent ``seqinfo.ini`` gives
      ``frameRate``;
    * ``rtsp://``, ``rtsps://``, ``http(s)://`` URLs, ``webcam://N``, webcam indices
      (int or digit string) and ``/dev/video*`` -> a reconnecting ``StreamSource``
      (``stream_options`` are its keyword arguments, e.g. ``epoch_s``, timeouts).

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: Unsupported stream scheme, stream options for a file or folder, or
            the file/folder cannot be used (see the sources). Messages show URLs with
            credentials redacted.
    """
    if is_stream_uri(uri):
        options = dict(stream_options or {})
        epoch_s = options.pop("epoch_s", None)
        return StreamSource(camera_id=camera_id, uri=uri, fps=fps, epoch_s=epoch_s,
                            options=options)
    if stream_options:
        raise ValueError(
            f"Camera {camera_id!r}: stream options ({', '.join(sorted(stream_options))}) "
            f"apply only to live sources (rtsp://, rtsps://, http(s)://, webcam://N), not "
            f"to the file or folder {redact_url(uri)}; remove them for this camera."
        )
    text = str(uri)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in _UNTESTED_SCHEMES:
        raise ValueError(
            f"Camera {camera_id!r}: {scheme}:// streams are not supported "
            f"({redact_url(text)}); use rtsp://, rtsps://, http(s):// or a webcam index."
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"Camera {camera_id!r}: source not found: {path}. Give a video file or a "
            "folder of images."
        )
    if path.is_dir():
        if fps is None:
            fps = _seqinfo_fps(path)
        if fps is None:
            raise ValueError(
                f"Camera {camera_id!r}: image folder {path} needs a frame rate; set fps for "
                "this camera in the config."
            )
        return ImageFolderSource(camera_id=camera_id, path=path, fps=fps)
    return VideoFileSource(camera_id=camera_id, path=path, fps=fps)


def _seqinfo_fps(folder: Path) -> float | None:
    """``frameRate`` from a MOTChallenge ``seqinfo.ini`` next to the image folder."""
    for candidate in (folder.parent / "seqinfo.ini", folder / "seqinfo.ini"):
        if not candidate.is_file():
            continue
        parser = configparser.ConfigParser()
        try:
            parser.read(candidate)
            rate = parser.getfloat("Sequence", "frameRate")
        except (configparser.Error, ValueError):
            logger.warning("Ignoring unreadable %s", candidate)
            continue
        logger.info("Using frameRate=%g from %s", rate, candidate)
        return rate
    return None
