"""Per-camera tracking: Kalman filter, association costs, ByteTrack-class tracker and
its options, and the tracklet builder that summarises tracks for cross-camera
association."""

from pipeline.tracking.options import TrackerOptions
from pipeline.tracking.tracker import TRACKERS, ByteTracker, Tracker
from pipeline.tracking.tracklets import TrackletBuilder, quality_scores

__all__ = ["TRACKERS", "ByteTracker", "Tracker", "TrackerOptions", "TrackletBuilder",
           "quality_scores"]
