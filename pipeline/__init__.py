"""Multi-camera person tracking: detect, track, re-identify, associate, export."""

__version__ = "0.1.0"
