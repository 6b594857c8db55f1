"""End-to-end runs of ``mtmc run`` on the real shipped footage.

These use the shipped detector and re-id weights, so they also check that a fresh
checkout has everything the main command needs.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.runner import RunOptions, run
from tests.conftest import REPO

SAMPLE = REPO / "configs" / "sample.yaml"
PETS = REPO / "configs" / "pets09_s2l1.yaml"


def _mtmc(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    summary = run(load_config(SAMPLE), out, RunOptions(max_frames=40, progress=False))
    return out, summary


def test_sample_run_writes_every_output(sample_run):
    out, summary = sample_run
    for name in ("trajectories.csv", "tracks_local.csv", "summary.json",
                 "plots/trajectories.png", "plots/timeline.png"):
        assert (out / name).is_file(), name
    for cam in ("cam1", "cam2", "cam3", "cam4"):
        assert (out / "mot" / f"{cam}.txt").stat().st_size > 0
    written = json.loads((out / "summary.json").read_text())
    assert written["camera_frames"] == 4 * 40
    assert [c["frames"] for c in written["cameras"]] == [40, 40, 40, 40]
    assert written["camera_frames_per_s"] > 0
    assert set(written["stage_ms"]) >= {"detect", "embed", "track", "associate"}


def test_sample_trajectories_are_consistent(sample_run):
    out, summary = sample_run
    with open(out / "trajectories.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["rows"] > 100
    assert list(rows[0]) == ["camera", "frame", "timestamp_s", "global_id", "track_id",
                             "x1", "y1", "x2", "y2", "score", "x_m", "y_m"]
    assert all(r["x_m"] == r["y_m"] == "" for r in rows)  # no camera is calibrated
    assert summary["floor"] == {"calibrated_cameras": [], "ground_cue": False}
    gid = np.array([int(r["global_id"]) for r in rows])
    assert (gid >= 1).all()
    # one (camera, track) always maps to one global id
    pairs = {(r["camera"], r["track_id"], r["global_id"]) for r in rows}
    assert len(pairs) == len({(c, t) for c, t, _ in pairs})
    # a global id never holds two boxes in one camera frame
    keys = [(r["camera"], r["frame"], r["global_id"]) for r in rows]
    assert len(keys) == len(set(keys))
    # the sample's cameras overlap: some people are found in more than one camera
    cams_of: dict[str, set[str]] = {}
    for r in rows:
        cams_of.setdefault(r["global_id"], set()).add(r["camera"])
    assert summary["identities_multi_camera"] >= 1
    assert any(len(c) >= 2 for c in cams_of.values())
    for r in rows[:200]:
        x1, y1, x2, y2 = (float(r[k]) for k in ("x1", "y1", "x2", "y2"))
        assert 0 <= x1 < x2 <= 960 and 0 <= y1 < y2 <= 540


def test_missing_reid_weights_fail_clearly(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(SAMPLE.read_text().replace("../", f"{REPO}/").replace(
        "osnet_rga.safetensors", "nope.safetensors"))
    result = _mtmc("run", str(config), "--out", str(tmp_path / "out"), "--max-frames", "2")
    assert result.returncode == 2
    assert "nope.safetensors" in result.stderr and "mtmc reid train" in result.stderr


def test_unknown_config_key_fails_clearly(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(SAMPLE.read_text().replace("../", f"{REPO}/") + "trackr: {}\n")
    result = _mtmc("run", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "'trackr'" in result.stderr and str(config) in result.stderr


def test_unreadable_camera_fails_clearly_and_names_it(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    config = tmp_path / "run.yaml"
    config.write_text(SAMPLE.read_text().replace("../", f"{REPO}/").replace(
        f"{REPO}/samples/pdestre_session3/cam3.webm", str(broken)))
    result = _mtmc("run", str(config), "--out", str(tmp_path / "out"), "--max-frames", "2")
    assert result.returncode == 2
    assert "cam3" in result.stderr and "broken.mp4" in result.stderr
