"""Per-camera tracking: Kalman filter, association costs, ByteTrack-class tracker,
and the tracklet builder that summarises tracks for cross-camera association."""

from pipeline.tracking.tracker import TRACKERS, ByteTracker, build_tracker
from pipeline.tracking.tracklets import TrackletBuilder, quality_scores

__all__ = ["TRACKERS", "ByteTracker", "build_tracker", "TrackletBuilder", "quality_scores"]
