"""Keeping OpenCV's and FFmpeg's own log lines off the user's terminal.

OpenCV and the FFmpeg inside it write to stderr by themselves (``[tcp @ 0x...]
Connection to tcp://... failed``, ``[ WARN:2@3.7] global cap.cpp ... VIDEOIO(FFMPEG)``,
``[matroska,webm @ 0x...] File ended prematurely``). Those lines bypass Python's
logging, interleave with the project's messages, and FFmpeg may print a URL as it was
given, password included. The sources already turn every such failure into one clear,
credential-masked log line or exception, so the native lines are silenced.

How, for the OpenCV builds this project uses (opencv-python 4.x/5.x):

* FFmpeg: OpenCV reads ``OPENCV_FFMPEG_LOGLEVEL`` (an FFmpeg ``AV_LOG_*`` number) at
  every FFmpeg open and applies it process-wide; without it FFmpeg logs errors. The
  variable is set to ``-8`` (``AV_LOG_QUIET``) for this process.
* OpenCV: its log level is set to silent (``cv2.utils.logging``).

Whoever wants the native lines (to debug a camera) sets ``OPENCV_FFMPEG_LOGLEVEL``,
``OPENCV_FFMPEG_DEBUG`` or ``OPENCV_LOG_LEVEL`` in the environment: those are left as
they are. Such lines may show URLs with credentials in clear.
"""

from __future__ import annotations

import logging
import os
import threading

import cv2

__all__ = ["quiet_native_logs"]

logger = logging.getLogger(__name__)

FFMPEG_QUIET = "-8"  # AV_LOG_QUIET
_FFMPEG_VARIABLES = ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_FFMPEG_DEBUG")
_LOCK = threading.Lock()
_done = False


def quiet_native_logs() -> None:
    """Silence OpenCV's and FFmpeg's own stderr lines for this process (idempotent).

    Call before opening a capture; FFmpeg's level takes effect at the next open. Levels
    the user set through the environment variables named in the module docstring win.
    """
    global _done
    with _LOCK:
        if _done:
            return
        _done = True
        if not any(name in os.environ for name in _FFMPEG_VARIABLES):
            os.environ["OPENCV_FFMPEG_LOGLEVEL"] = FFMPEG_QUIET
        if "OPENCV_LOG_LEVEL" not in os.environ:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        logger.debug("OpenCV/FFmpeg native logs: FFmpeg level %s, OpenCV level %s",
                     os.environ.get("OPENCV_FFMPEG_LOGLEVEL", "(debug)"),
                     cv2.utils.logging.getLogLevel())
