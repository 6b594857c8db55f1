"""Helpers shared by the tests: paths and small record builders.

Import them explicitly (``from tests.conftest import DATA, make_dets``); pytest also
loads this file first, so it is the one place for options of the whole suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from pipeline.types import Detections, Tracklet, Tracks

REPO = Path(__file__).resolve().parents[1]
"""The repository root."""
DATA = REPO.parent / "shared" / "data"
"""The shared read-only data (see its README.md)."""


def make_dets(boxes, scores=None, emb=None) -> Detections:
    """Detections from xyxy boxes; scores default to 0.9, no embeddings by default."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.full(len(boxes), 0.9, np.float32) if scores is None else scores
    emb = np.zeros((len(boxes), 0), np.float32) if emb is None else emb
    return Detections(xyxy=boxes, score=np.asarray(scores, np.float32), embedding=emb)


def make_tracks(ids, boxes, scores=None, emb=None, det_index=None) -> Tracks:
    """Tracks from ids and xyxy boxes; scores 0.9, det_index 0..N-1, no embeddings."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return Tracks(
        track_id=np.asarray(ids),
        xyxy=boxes,
        score=np.full(n, 0.9, np.float32) if scores is None else np.asarray(scores, np.float32),
        det_index=np.arange(n) if det_index is None else np.asarray(det_index),
        embedding=np.zeros((n, 0), np.float32) if emb is None else np.asarray(emb, np.float32),
    )


def make_tracklet(camera: str, track_id: int, frames: Sequence[int], vector,
                  fps: float = 10.0, quality: float = 1.0) -> Tracklet:
    """A tracklet over ``frames`` (timestamps frames / fps) whose pooled embedding is
    ``vector`` normalised; boxes are zeros (association reads times and embeddings)."""
    frames = np.asarray(frames)
    v = np.asarray(vector, np.float32)
    return Tracklet(camera_id=camera, track_id=track_id, frames=frames,
                    timestamps_s=frames / fps, xyxy=np.zeros((len(frames), 4)),
                    embedding=v / np.linalg.norm(v), quality=quality)


SAMPLE_CONFIG = REPO / "configs" / "sample.yaml"
"""The shipped four-camera sample's config."""


@pytest.fixture(scope="session")
def sample_store_run(tmp_path_factory):
    """One short offline run of the shipped sample (30 ticks, 4 cameras), shared by the
    run-store and review tests: ``(out_dir, summary)``. Copy the folder before writing
    to its store (review corrections)."""
    from pipeline.config import load_config
    from pipeline.runner import RunOptions, run

    out = tmp_path_factory.mktemp("sample_store")
    summary = run(load_config(SAMPLE_CONFIG), out,
                  RunOptions(max_frames=30, progress=False, handle_signals=False))
    return out, summary


def pets09_frames(numbers: Sequence[int]) -> list[np.ndarray]:
    """PETS09-S2L1 frames (BGR) by 1-based frame number, in the order of ``numbers``."""
    import cv2

    wanted = set(numbers)
    capture = cv2.VideoCapture(str(DATA / "video" / "pets09_s2l1" / "vtest.avi"))
    found = {}
    for n in range(1, max(wanted) + 1):
        ok, image = capture.read()
        assert ok, f"PETS09 video ended before frame {n}"
        if n in wanted:
            found[n] = image
    capture.release()
    return [found[n] for n in numbers]


# Floor points of two made-up calibrations of the sample's cam1 and cam2 (960x540): each
# maps the image's lower part onto an 8 m x 20 m patch, cam2's 30 m east of cam1's. The
# sample is filmed from drones, so no true calibration exists; these exercise the code.
SAMPLE_FLOOR_POINTS = {
    "cam1": [[0, 540, 0.0, 0.0], [960, 540, 8.0, 0.0], [700, 200, 8.0, 20.0],
             [260, 200, 0.0, 20.0]],
    "cam2": [[0, 540, 30.0, 0.0], [960, 540, 38.0, 0.0], [700, 200, 38.0, 20.0],
             [260, 200, 30.0, 20.0]],
}


@pytest.fixture(scope="session")
def calibrated_sample_run(tmp_path_factory):
    """30 ticks of the sample with cam1 and cam2 calibrated (``SAMPLE_FLOOR_POINTS``) and
    a floor-plan image (40 x 22 m at 10 px/m): ``(out_dir, summary, config)``."""
    from dataclasses import replace

    from PIL import Image

    from pipeline.config import load_config
    from pipeline.runner import RunOptions, run

    out = tmp_path_factory.mktemp("calibrated_sample")
    plan = out.parent / f"{out.name}_plan.png"
    Image.new("RGB", (400, 220), (235, 238, 230)).save(plan)
    config = load_config(SAMPLE_CONFIG)
    cameras = tuple(replace(c, calibration={"points": SAMPLE_FLOOR_POINTS[c.id]})
                    if c.id in SAMPLE_FLOOR_POINTS else c for c in config.cameras)
    config = replace(config, cameras=cameras, output=replace(
        config.output, floor_plan={"image": str(plan), "origin_m": [-1.0, -1.0],
                                   "px_per_m": 10.0}))
    summary = run(config, out, RunOptions(max_frames=30, progress=False,
                                          handle_signals=False))
    return out, summary, config
