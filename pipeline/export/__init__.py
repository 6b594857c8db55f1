"""Exporters: trajectory CSV, MOTChallenge txt, annotated video and PNG plots."""

from pipeline.export.csv_writer import (
    CSV_COLUMNS,
    Trajectories,
    TrajectoryCsvWriter,
    read_trajectories,
    rewrite_global_ids,
)
from pipeline.export.mot import MotFrame, MotWriter, read_mot
from pipeline.export.palette import color_bgr, color_rgb01
from pipeline.export.plots import plot_camera_tracks, plot_identity_timeline, plot_trajectories
from pipeline.export.revisions import (
    REVISION_COLUMNS,
    RevisionCsvWriter,
    final_global_ids,
    read_revisions,
)
from pipeline.export.sinks import (
    MotSink,
    PlotSink,
    RevisionSink,
    Sink,
    Sinks,
    TrajectorySink,
    VideoSink,
)
from pipeline.export.video import FOURCCS, AnnotatedVideoWriter, draw_tracks, render_videos

__all__ = [
    "CSV_COLUMNS",
    "FOURCCS",
    "REVISION_COLUMNS",
    "RevisionCsvWriter",
    "AnnotatedVideoWriter",
    "MotSink",
    "PlotSink",
    "RevisionSink",
    "Sink",
    "Sinks",
    "TrajectorySink",
    "VideoSink",
    "MotFrame",
    "MotWriter",
    "Trajectories",
    "TrajectoryCsvWriter",
    "color_bgr",
    "color_rgb01",
    "draw_tracks",
    "final_global_ids",
    "plot_camera_tracks",
    "plot_identity_timeline",
    "plot_trajectories",
    "read_mot",
    "read_revisions",
    "read_trajectories",
    "render_videos",
    "rewrite_global_ids",
]
