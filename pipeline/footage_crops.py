"""Person crops cut from footage by the pipeline's detector (``mtmc reid crops``).

Unlabelled crops of real cameras are what a re-id model meets in the pipeline: detector
boxes, misaligned, at CCTV resolutions and lighting. With a teacher they can train a
student without any label (``mtmc reid train --unlabelled DIR``: the teacher's losses
only). This tool runs the detector on every ``--every``-th frame of each video file or
image folder and writes each confident, tall enough box as a JPEG:

    OUT/<source stem, or the sequence of an img1/ folder>/f<frame:06d>_<k:02d>.jpg

plus ``OUT/crops.json`` (source, frame, box, score per crop), so a crop can be traced to
its frame. Names never match the labelled ``PPPP_cC_KK.jpg`` scheme, so such a folder
cannot be mistaken for a labelled re-id folder.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["CropRecord", "add_arguments", "boxes_to_keep", "cut_crops", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropRecord:
    """One written crop: the file (relative to the output folder), its source, the
    0-based frame index, the box (x1, y1, x2, y2 pixels) and the detector score."""

    file: str
    source: str
    frame: int
    box: tuple[float, float, float, float]
    score: float


def boxes_to_keep(xyxy: np.ndarray, score: np.ndarray, *, frame_hw: tuple[int, int],
                  min_score: float, min_height: int, max_aspect: float = 1.0) -> np.ndarray:
    """Indices of the boxes worth a crop: score >= ``min_score``, height >= ``min_height``
    pixels, width / height <= ``max_aspect`` (a person box is taller than wide) and not
    touching the frame's top or bottom edge (cut-off people, half a body)."""
    if len(xyxy) == 0:
        return np.zeros(0, dtype=np.int64)
    h_img = frame_hw[0]
    w = xyxy[:, 2] - xyxy[:, 0]
    h = xyxy[:, 3] - xyxy[:, 1]
    keep = ((score >= min_score) & (h >= min_height) & (w <= max_aspect * h) & (w > 0)
            & (xyxy[:, 1] > 1) & (xyxy[:, 3] < h_img - 2))
    return np.flatnonzero(keep)


def cut_crops(sources: Sequence[Path], out: Path, *, detector, every: int = 3,
              min_score: float = 0.5, min_height: int = 64,
              fps: float = 10.0, max_frames: int | None = None) -> list[CropRecord]:
    """Detect people on every ``every``-th frame of each source and write their crops.

    Args:
        sources: Video files or image folders.
        out: Output folder (created); one sub-folder per source.
        detector: Anything with ``detect(list of BGR frames) -> list[Detections]``
            (:class:`pipeline.detection.yolo.YoloDetector`).
        every: Frame step (consecutive frames hold nearly the same crops).
        min_score, min_height: See :func:`boxes_to_keep`.
        fps: Frame rate of image folders without a ``seqinfo.ini`` (it only sets their
            timestamps).
        max_frames: Read at most this many frames per source.

    Returns:
        The crops written, in order; also saved as ``out/crops.json``.

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: ``every`` < 1, two sources with the same stem, a source's output
            folder already holding files, or no crop at all.
    """
    from pipeline.sources.factory import open_source

    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    stems = [_source_name(Path(s)) for s in sources]
    if len(set(stems)) != len(stems):
        raise ValueError(f"two sources share a name ({', '.join(stems)}); crops would mix: "
                         "give files with distinct names")
    for source, stem in zip(map(Path, sources), stems, strict=True):
        if not source.exists():
            raise FileNotFoundError(f"footage not found: {source}")
        if (out / stem).is_dir() and any((out / stem).iterdir()):
            # training reads every image under the folder: old crops would mix in
            raise ValueError(f"{out / stem} already holds crops; give another --out or "
                             "delete that folder first")
    out.mkdir(parents=True, exist_ok=True)
    records: list[CropRecord] = []
    for source, stem in zip(map(Path, sources), stems, strict=True):
        folder = out / stem
        folder.mkdir(exist_ok=True)
        opened = open_source(camera_id=stem, uri=source,
                             fps=fps if source.is_dir() else None)
        before = len(records)
        with opened:
            for frame in _frames(opened, every, max_frames):
                image = frame.image_bgr
                dets = detector.detect([image])[0]
                keep = boxes_to_keep(dets.xyxy, dets.score, frame_hw=image.shape[:2],
                                     min_score=min_score, min_height=min_height)
                for k, i in enumerate(keep):
                    x1, y1, x2, y2 = (int(round(v)) for v in dets.xyxy[i])
                    name = f"{stem}/f{frame.index:06d}_{k:02d}.jpg"
                    if not cv2.imwrite(str(out / name), image[y1:y2, x1:x2],
                                       [cv2.IMWRITE_JPEG_QUALITY, 95]):
                        raise OSError(f"could not write {out / name}")
                    records.append(CropRecord(file=name, source=str(source), frame=frame.index,
                                              box=tuple(round(float(v), 1) for v in dets.xyxy[i]),
                                              score=round(float(dets.score[i]), 3)))
        log.info("%s: %d crops", source, len(records) - before)
    if not records:
        raise ValueError(f"no person crop found in {', '.join(map(str, sources))} (score >= "
                         f"{min_score}, height >= {min_height} px); lower --min-score or "
                         "--min-height")
    manifest = out / "crops.json"
    tmp = manifest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps([r.__dict__ for r in records], indent=0))
    tmp.replace(manifest)
    return records


def _source_name(path: Path) -> str:
    """A source's name in the output: its stem (a MOTChallenge ``img1/`` folder: the
    sequence's name)."""
    return path.parent.name if path.name == "img1" else path.stem


def _frames(source: Iterable, every: int, max_frames: int | None) -> Iterable:
    for frame in source:
        if max_frames is not None and frame.index >= max_frames:
            return
        if frame.index % every == 0:
            yield frame


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mtmc reid crops`` options to ``parser``."""
    parser.add_argument("sources", type=Path, nargs="+", help="video files or image folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--every", type=int, default=3, help="detect every N-th frame")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--min-height", type=int, default=64, help="pixels")
    parser.add_argument("--max-frames", type=int, default=None, help="per source")
    parser.add_argument("--fps", type=float, default=10.0,
                        help="frame rate of image folders without seqinfo.ini")
    parser.add_argument("--weights", type=Path, default=Path("weights/yolov8n_recovered.pt"),
                        help="detector weights (as in a run config)")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--imgsz", type=int, nargs=2, default=[384, 640], metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)


def main(args: argparse.Namespace) -> int:
    """Run ``mtmc reid crops``; returns the exit code."""
    from pipeline.detection.yolo import YoloDetector

    detector = YoloDetector(weights=args.weights, backend=args.backend,
                            imgsz=tuple(args.imgsz), conf=min(args.min_score, 0.25),
                            threads=args.threads)
    records = cut_crops(args.sources, args.out, detector=detector, every=args.every,
                        min_score=args.min_score, min_height=args.min_height, fps=args.fps,
                        max_frames=args.max_frames)
    print(f"wrote {len(records)} crops from {len(args.sources)} sources to {args.out}")
    return 0
