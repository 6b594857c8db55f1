"""Frame sources: video files, image folders, and timestamp-aligned camera sets."""

from pipeline.sources.base import FrameSource
from pipeline.sources.factory import SOURCES, open_source
from pipeline.sources.images import IMAGE_SUFFIXES, ImageFolderSource
from pipeline.sources.sync import CameraSet, synchronise
from pipeline.sources.video import VideoFileSource

__all__ = [
    "CameraSet",
    "FrameSource",
    "IMAGE_SUFFIXES",
    "ImageFolderSource",
    "SOURCES",
    "VideoFileSource",
    "open_source",
    "synchronise",
]
