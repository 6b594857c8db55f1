"""Annotated video: boxes coloured by global identity, labelled ``g<global>/t<track>``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.closing import Closing
from pipeline.export.csv_writer import read_trajectories
from pipeline.export.palette import color_bgr

__all__ = ["AnnotatedVideoWriter", "draw_tracks", "render_videos", "FOURCCS"]

logger = logging.getLogger(__name__)

FOURCCS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
"""Codecs tried in order with the container they need. mp4v is in every opencv-python
wheel (H.264 ``avc1`` is not: its encoder is missing from this build); MJPG/AVI is the
fallback that always works."""

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_tracks(
    image_bgr: np.ndarray,
    *,
    xyxy: np.ndarray,
    track_ids: np.ndarray,
    global_ids: np.ndarray | None = None,
    caption: str = "",
) -> np.ndarray:
    """Return a copy of the image with labelled boxes and a caption.

    Args:
        image_bgr: uint8 (H, W, 3) BGR image (not modified).
        xyxy: (N, 4) pixel boxes.
        track_ids: (N,) per-camera track ids.
        global_ids: (N,) global ids (-1 = unknown; drawn grey), or None (all unknown).
        caption: Text drawn top-left (e.g. camera and frame number).
    """
    out = image_bgr.copy()
    n = len(track_ids)
    gids = np.full(n, -1, np.int64) if global_ids is None else np.asarray(global_ids, np.int64)
    scale = max(0.4, min(out.shape[:2]) / 900.0)
    thick = max(1, round(scale * 2))
    for box, track_id, gid in zip(np.asarray(xyxy).reshape(-1, 4), track_ids, gids, strict=True):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = color_bgr(int(gid))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        label = f"g{gid}/t{track_id}" if gid > 0 else f"g?/t{track_id}"
        (tw, th), base = cv2.getTextSize(label, _FONT, scale * 0.6, 1)
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + base + 2), colour, -1)
        cv2.putText(out, label, (x1 + 2, top + th + 1), _FONT, scale * 0.6, (0, 0, 0), 1,
                    cv2.LINE_AA)
    if caption:
        (tw, th), base = cv2.getTextSize(caption, _FONT, scale * 0.8, thick)
        cv2.rectangle(out, (0, 0), (tw + 12, th + base + 12), (0, 0, 0), -1)
        cv2.putText(out, caption, (6, th + 6), _FONT, scale * 0.8, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return out


class AnnotatedVideoWriter(Closing):
    """Write annotated frames of one camera to a video file.

    The codec follows ``FOURCCS``: mp4v in an .mp4 file, else MJPG in an .avi file
    next to the requested path (``self.path`` is the file actually written).
    """

    def __init__(self, *, path: Path | str, fps: float, size_wh: tuple[int, int]) -> None:
        """Open the video file.

        Args:
            path: Requested output path; its suffix may change with the fallback codec.
            fps: Playback frame rate.
            size_wh: (width, height) of every frame, pixels.

        Raises:
            RuntimeError: No codec of ``FOURCCS`` could open a writer.
        """
        requested = Path(path)
        requested.parent.mkdir(parents=True, exist_ok=True)
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.fps = float(fps)
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None
        for fourcc, suffix in FOURCCS:
            candidate = requested.with_suffix(suffix)
            writer = cv2.VideoWriter(
                str(candidate), cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size_wh
            )
            if writer.isOpened():
                self._writer, self.path, self.fourcc = writer, candidate, fourcc
                break
            writer.release()
            logger.info("Codec %s unavailable for %s, trying the next one", fourcc, candidate)
        if self._writer is None:
            raise RuntimeError(
                f"Cannot open a video writer for {requested} with any of "
                f"{[f for f, _ in FOURCCS]}; check the folder is writable and OpenCV has FFmpeg."
            )

    def write(
        self,
        image_bgr: np.ndarray,
        *,
        xyxy: np.ndarray | None = None,
        track_ids: np.ndarray | None = None,
        global_ids: np.ndarray | None = None,
        camera_id: str = "",
        frame_index: int | None = None,
    ) -> None:
        """Draw the boxes on a copy of the frame and append it.

        Args:
            image_bgr: uint8 (H, W, 3) BGR frame of size ``size_wh``.
            xyxy: (N, 4) pixel boxes, or None for none.
            track_ids: (N,) per-camera track ids.
            global_ids: (N,) global ids or None (all unknown).
            camera_id: Shown in the overlay.
            frame_index: 0-based frame index, shown in the overlay.
        """
        if self._writer is None:
            raise ValueError(f"{self.path}: writer is closed")
        if (image_bgr.shape[1], image_bgr.shape[0]) != self.size_wh:
            raise ValueError(
                f"{self.path}: frame is {image_bgr.shape[1]}x{image_bgr.shape[0]}, the video "
                f"is {self.size_wh[0]}x{self.size_wh[1]}"
            )
        boxes = np.zeros((0, 4)) if xyxy is None else xyxy
        ids = np.zeros(len(boxes), np.int64) if track_ids is None else track_ids
        caption = " ".join(
            part for part in (camera_id, "" if frame_index is None else f"frame {frame_index}")
            if part
        )
        self._writer.write(
            draw_tracks(image_bgr, xyxy=boxes, track_ids=ids, global_ids=global_ids,
                        caption=caption)
        )
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file (safe to call twice)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None



def _read_frames(source: Path) -> Iterator[np.ndarray]:
    """BGR frames of a video file or a sorted image folder (export may not import sources)."""
    if source.is_dir():
        suffixes = {".jpg", ".jpeg", ".png", ".bmp"}
        for file in sorted(p for p in source.iterdir() if p.suffix.lower() in suffixes):
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"Cannot read image {file} while rendering video")
            yield image
        return
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"Cannot open {source} while rendering video")
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield image
    finally:
        capture.release()


def render_videos(
    *,
    config: Any,
    trajectories: Path | str,
    out_dir: Path | str,
    max_frames: int | None = None,
    default_fps: float = 10.0,
) -> list[Path]:
    """Render one annotated video per camera from the sources and a trajectory CSV.

    Args:
        config: Anything with ``cameras``, each having ``id``, ``source`` (video file or
            image folder path) and ``fps`` (None = the video's own rate).
        trajectories: Trajectory CSV (``global_id`` filled in or -1).
        out_dir: Folder for ``<camera>.mp4`` (or ``.avi`` with the fallback codec).
        max_frames: Render only the first frames of each camera.
        default_fps: Playback rate when neither the config nor the source gives one.

    Returns:
        The written video paths, in camera order.
    """
    table = read_trajectories(trajectories)
    out_dir = Path(out_dir)
    written: list[Path] = []
    for camera in config.cameras:
        rows = table.select(table.camera == camera.id)
        by_frame: dict[int, list[int]] = {}
        for i, frame in enumerate(rows.frame.tolist()):
            by_frame.setdefault(frame, []).append(i)
        source = Path(camera.source)
        fps = camera.fps or _file_fps(source) or default_fps
        writer: AnnotatedVideoWriter | None = None
        try:
            for index, image in enumerate(_read_frames(source)):
                if max_frames is not None and index >= max_frames:
                    break
                if writer is None:
                    size = (image.shape[1], image.shape[0])
                    writer = AnnotatedVideoWriter(
                        path=out_dir / f"{camera.id}.mp4", fps=fps, size_wh=size
                    )
                sel = np.asarray(by_frame.get(index, []), np.int64)
                writer.write(image, xyxy=rows.xyxy[sel], track_ids=rows.track_id[sel],
                             global_ids=rows.global_id[sel], camera_id=camera.id,
                             frame_index=index)
        finally:
            if writer is not None:
                writer.close()
                written.append(writer.path)
    return written


def _file_fps(source: Path) -> float | None:
    if source.is_dir():
        return None
    capture = cv2.VideoCapture(str(source))
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    capture.release()
    return fps if fps > 0 else None
