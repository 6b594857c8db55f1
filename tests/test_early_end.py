"""A recorded camera that ends far too early is reported once and marked in summary.json.

The real case: the first 100 kB of the sample's ``cam1.webm`` (a cut copy) decodes 5 of
its 150 frames and then ends; the run goes on with the other camera.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.sources import CameraSet, FrameSource, early_endings
from pipeline.types import Frame

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "pdestre_session3"


class _Clip(FrameSource):
    """``n`` tiny frames; ``count`` is what its container claims (None = unknown)."""

    def __init__(self, camera_id: str, n: int, count: int | None, fps: float = 10.0):
        self.camera_id, self.n, self.frame_count, self.fps = camera_id, n, count, fps
        self.size_wh = (4, 2)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n):
            yield Frame(self.camera_id, i, i / self.fps, np.zeros((2, 4, 3), np.uint8))

    def close(self) -> None:
        pass


def _run_ticks(sources: list[FrameSource], max_frames: int | None = None):
    camera_set = CameraSet(sources=sources, max_frames=max_frames)
    frames = dict.fromkeys(camera_set.camera_ids, 0)
    for tick in camera_set:
        for frame in tick:
            frames[frame.camera_id] += 1
    return camera_set, frames


def test_short_cameras_are_judged_by_container_and_by_the_other_cameras(caplog):
    sources = [
        _Clip("full", 100, None),
        _Clip("cut", 12, 100),       # its container says 100: truncated
        _Clip("short", 30, None),    # no count; the others ran 10 s
        _Clip("nearly", 95, None),   # within 10%: a normal difference in length
        _Clip("slow", 48, 50, fps=5.0),  # 5 fps camera over the same 10 s, 2 frames short
    ]
    camera_set, frames = _run_ticks(sources)
    assert camera_set.ended == {"full": 100, "cut": 12, "short": 30, "nearly": 95, "slow": 48}
    with caplog.at_level(logging.WARNING, logger="pipeline.sources.endings"):
        report = early_endings(sources, camera_set.ended, frames)
    assert report["cut"] == {"ended_early": True, "frames_expected": 100,
                             "expected_from": "container"}
    assert report["short"] == {"ended_early": True, "frames_expected": 100,
                               "expected_from": "other cameras"}
    for cid in ("full", "nearly", "slow"):
        assert report[cid] == {"ended_early": False}, cid
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert "'cut'" in warned[0] and "ended after 12 frames" in warned[0] \
        and "says 100 frames" in warned[0]
    assert "'short'" in warned[1] and "other cameras ran 10.0 s" in warned[1]


def test_cameras_the_run_stopped_are_not_early():
    # --max-frames 20: nobody ran out except the 5-frame camera.
    sources = [_Clip("a", 100, 100), _Clip("b", 100, 100), _Clip("cut", 5, 100)]
    camera_set, frames = _run_ticks(sources, max_frames=20)
    assert camera_set.ended == {"cut": 5}
    report = early_endings(sources, camera_set.ended, frames)
    assert report == {"a": {"ended_early": False}, "b": {"ended_early": False},
                      "cut": {"ended_early": True, "frames_expected": 100,
                              "expected_from": "container"}}


def test_mtmc_run_reports_a_truncated_recording_once(tmp_path):
    cut = tmp_path / "cam1_cut.webm"
    cut.write_bytes((SAMPLE / "cam1.webm").read_bytes()[:100_000])
    config = tmp_path / "cut.yaml"
    config.write_text(
        f"cameras:\n  - {{id: cam1, source: {cut}}}\n"
        f"  - {{id: cam2, source: {SAMPLE / 'cam2.webm'}}}\n"
        f"detector: {{name: yolo, weights: {REPO / 'weights' / 'yolov8n_int8.tflite'}}}\n"
        "reid: {enabled: false}\noutput: {mot: false, plots: false}\nthreads: 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(config), "--out", str(tmp_path / "out"),
         "--no-progress", "--max-frames", "8"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**env, "YOLO_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    cameras = {c["id"]: c for c in
               json.loads((tmp_path / "out" / "summary.json").read_text())["cameras"]}
    assert cameras["cam1"]["frames"] == 5 and cameras["cam1"]["ended_early"] is True
    assert cameras["cam1"]["frames_expected"] == 150
    assert cameras["cam1"]["expected_from"] == "container"
    assert cameras["cam2"]["frames"] == 8 and cameras["cam2"]["ended_early"] is False
    warnings = [line for line in result.stderr.splitlines() if "ended after" in line]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert "'cam1'" in warnings[0] and "cam1_cut.webm" in warnings[0]
    assert "says 150 frames" in warnings[0] and "truncated" in warnings[0]
    assert "cam1 ended early: 5 of 150 frames" in result.stdout
    # FFmpeg's own "[matroska,webm @ 0x...] File ended prematurely" stays off the terminal.
    assert not re.search(r"^\[[\w,.\- ]+ @ (0x)?[0-9a-f]+\]", result.stderr, re.M), \
        result.stderr[-3000:]


def test_a_complete_run_of_the_sample_marks_nobody():
    from pipeline.sources import VideoFileSource

    sources = [VideoFileSource(camera_id=f"cam{i}", path=SAMPLE / f"cam{i}.webm")
               for i in (1, 2)]
    camera_set, frames = _run_ticks(sources)
    assert camera_set.ended == {"cam1": 150, "cam2": 150}
    assert early_endings(sources, camera_set.ended, frames) == {
        "cam1": {"ended_early": False}, "cam2": {"ended_early": False}}
