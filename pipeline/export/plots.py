"""PNG plots of a run: foot-point trajectories per camera, an identity timeline, and (for
calibrated cameras) every identity's path on the floor in metres.

Uses matplotlib's object API with the Agg canvas directly, so the global pyplot
backend is never touched and no display is needed. Colours match the annotated
videos (``palette.color_rgb01`` of the global id).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pipeline.calibration import FloorPlan
from pipeline.export.csv_writer import Trajectories, read_trajectories
from pipeline.export.palette import color_rgb01

__all__ = ["plot_trajectories", "plot_camera_tracks", "plot_identity_timeline",
           "plot_floor_paths"]


def _identity(table: Trajectories) -> np.ndarray:
    """Global id where known, else a negative per-camera stand-in (-track_id) so that
    un-associated tracks still plot as separate lines (in grey)."""
    return np.where(table.global_id > 0, table.global_id, -table.track_id)


def _break_gaps(frames: np.ndarray, x: np.ndarray, y: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Points in frame order with a NaN between frames that are not consecutive.

    matplotlib breaks a line at NaN, so a person who leaves a view (or whose track is
    lost) and comes back is drawn as separate pieces, not joined by a straight line
    across the time they were absent.
    """
    gaps = np.flatnonzero(np.diff(frames) > 1) + 1
    return (np.insert(x.astype(np.float64), gaps, np.nan),
            np.insert(y.astype(np.float64), gaps, np.nan))


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=100)
    return path


def plot_camera_tracks(
    table: Trajectories, path: Path | str, sizes_wh: dict[str, tuple[int, int]] | None = None
) -> Path:
    """One panel per camera: box foot points (bottom centre) joined per identity.

    Args:
        table: Trajectory rows.
        path: Output PNG.
        sizes_wh: Optional image (width, height) per camera for the axis limits; by
            default the limits follow the data.
    """
    cameras = table.cameras or ["(no rows)"]
    cols = min(len(cameras), 2)
    rows = math.ceil(len(cameras) / cols)
    figure = Figure(figsize=(6.4 * cols, 4.0 * rows))
    identity = _identity(table)
    foot_x = (table.xyxy[:, 0] + table.xyxy[:, 2]) / 2
    foot_y = table.xyxy[:, 3]
    for k, camera in enumerate(cameras):
        axes = figure.add_subplot(rows, cols, k + 1)
        on_camera = table.camera == camera
        for ident in np.unique(identity[on_camera]):
            sel = on_camera & (identity == ident)
            order = np.argsort(table.frame[sel], kind="stable")
            colour = color_rgb01(int(ident))
            x, y = _break_gaps(table.frame[sel][order], foot_x[sel][order], foot_y[sel][order])
            axes.plot(x, y, "-", color=colour, lw=1.2)
            axes.plot(foot_x[sel][order][-1:], foot_y[sel][order][-1:], "o", color=colour, ms=3)
            if ident > 0:
                axes.annotate(f"g{ident}", (foot_x[sel][order][-1], foot_y[sel][order][-1]),
                              fontsize=7, color=colour)
        if sizes_wh and camera in sizes_wh:
            axes.set_xlim(0, sizes_wh[camera][0])
            axes.set_ylim(sizes_wh[camera][1], 0)
        else:
            axes.invert_yaxis()  # image coordinates: y grows downwards
        axes.set_title(f"{camera}: foot points by global id", fontsize=10)
        axes.set_xlabel("x (px)")
        axes.set_ylabel("y (px)")
        axes.set_aspect("equal", adjustable="datalim")
    figure.tight_layout()
    return _save(figure, Path(path))


def plot_identity_timeline(table: Trajectories, path: Path | str) -> Path:
    """Global ids (rows) over time (x), one marker style per camera.

    Shows which cameras each identity was seen in and when; un-associated tracks
    (``global_id = -1``) are left out.
    """
    known = table.select(table.global_id > 0)
    cameras = table.cameras
    markers = "os^Dv<>pP*Xh"
    ids = np.unique(known.global_id)
    figure = Figure(figsize=(10, max(3.0, 0.22 * len(ids) + 1.5)))
    axes = figure.add_subplot(1, 1, 1)
    row_of = {int(g): i for i, g in enumerate(ids)}
    for c, camera in enumerate(cameras):
        sel = known.camera == camera
        if not sel.any():
            continue
        y = np.array([row_of[int(g)] for g in known.global_id[sel]]) + (c - len(cameras) / 2) * 0.08
        colours = [color_rgb01(int(g)) for g in known.global_id[sel]]
        axes.scatter(known.timestamp_s[sel], y, c=colours, s=6, marker=markers[c % len(markers)],
                     linewidths=0)
    axes.set_yticks(range(len(ids)))
    axes.set_yticklabels([f"g{g}" for g in ids], fontsize=7)
    axes.set_xlabel("time (s)")
    axes.set_title("Global identities across cameras")
    handles = [
        Line2D([], [], ls="", marker=markers[c % len(markers)], color="k", label=camera)
        for c, camera in enumerate(cameras)
    ]
    if handles:
        axes.legend(handles=handles, loc="upper right", fontsize=8, title="camera")
    axes.grid(True, axis="x", alpha=0.3)
    figure.tight_layout()
    return _save(figure, Path(path))


def plot_floor_paths(table: Trajectories, path: Path | str,
                     plan: FloorPlan | None = None) -> Path:
    """Every identity's floor path in metres, from all calibrated cameras at once.

    Rows are ordered by time per identity; a gap of more than 1 s (the person unseen by
    every calibrated camera) breaks the line. Identities get the videos' colours;
    rows of tracks without an identity are left out. With ``plan``, the paths are drawn
    over the floor-plan image placed by its origin and scale.
    """
    known = np.isfinite(table.floor_xy).all(axis=1) & (table.global_id > 0)
    figure = Figure(figsize=(8, 8))
    axes = figure.add_subplot(1, 1, 1)
    if plan is not None:
        from PIL import Image

        with Image.open(plan.image) as img:
            picture = np.asarray(img.convert("RGB"))
        h, w = picture.shape[:2]
        x0, y0 = plan.origin_m
        bottom = y0 - h / plan.px_per_m if plan.y_up else y0 + h / plan.px_per_m
        axes.imshow(picture, extent=(x0, x0 + w / plan.px_per_m, bottom, y0), alpha=0.8)
    elif known.any():
        axes.invert_yaxis()  # as the review page draws it: y grows downwards
    for ident in np.unique(table.global_id[known]):
        sel = known & (table.global_id == ident)
        order = np.argsort(table.timestamp_s[sel], kind="stable")
        t, xy = table.timestamp_s[sel][order], table.floor_xy[sel][order]
        gaps = np.flatnonzero(np.diff(t) > 1.0) + 1
        colour = color_rgb01(int(ident))
        axes.plot(np.insert(xy[:, 0], gaps, np.nan), np.insert(xy[:, 1], gaps, np.nan), "-",
                  color=colour, lw=1.2)
        axes.plot(xy[-1:, 0], xy[-1:, 1], "o", color=colour, ms=3)
        axes.annotate(f"g{ident}", (xy[-1, 0], xy[-1, 1]), fontsize=7, color=colour)
    axes.set_title("Floor paths by global id (all calibrated cameras)", fontsize=10)
    axes.set_xlabel("x (m)")
    axes.set_ylabel("y (m)")
    axes.set_aspect("equal", adjustable="datalim")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    return _save(figure, Path(path))


def plot_trajectories(
    trajectories: Path | str | Trajectories,
    out_dir: Path | str,
    sizes_wh: dict[str, tuple[int, int]] | None = None,
    plan: FloorPlan | None = None,
) -> list[Path]:
    """Write ``trajectories.png`` and ``timeline.png`` into ``out_dir``, and ``floor.png``
    when some rows have floor positions (calibrated cameras).

    Args:
        trajectories: A trajectory CSV path or an already-read table.
        out_dir: Output folder (created).
        sizes_wh: Optional image sizes per camera for the trajectory axes.
        plan: Optional floor-plan image under the floor paths.

    Returns:
        The PNG paths written.
    """
    table = (
        trajectories
        if isinstance(trajectories, Trajectories)
        else read_trajectories(trajectories)
    )
    out_dir = Path(out_dir)
    paths = [
        plot_camera_tracks(table, out_dir / "trajectories.png", sizes_wh),
        plot_identity_timeline(table, out_dir / "timeline.png"),
    ]
    if np.isfinite(table.floor_xy).all(axis=1).any():
        paths.append(plot_floor_paths(table, out_dir / "floor.png", plan))
    return paths
