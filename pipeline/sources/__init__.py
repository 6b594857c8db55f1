"""Frame sources: video files, image folders, live streams, and aligned camera sets."""

from pipeline.sources.base import FrameSource
from pipeline.sources.endings import early_endings
from pipeline.sources.factory import SOURCES, open_source
from pipeline.sources.images import IMAGE_SUFFIXES, ImageFolderSource
from pipeline.sources.live import live_ticks
from pipeline.sources.stream import (
    RTSP_TRANSPORTS,
    StreamOptions,
    StreamSource,
    first_frame_wait_s,
    is_stream_uri,
    redact_url,
)
from pipeline.sources.sync import CameraSet, synchronise
from pipeline.sources.video import VideoFileSource

__all__ = [
    "CameraSet",
    "FrameSource",
    "IMAGE_SUFFIXES",
    "ImageFolderSource",
    "RTSP_TRANSPORTS",
    "SOURCES",
    "StreamSource",
    "VideoFileSource",
    "StreamOptions",
    "early_endings",
    "first_frame_wait_s",
    "is_stream_uri",
    "live_ticks",
    "open_source",
    "redact_url",
    "synchronise",
]
