"""``mtmc run`` with a live camera that refuses connections: what the user sees.

One run of the real command line on an RTSP URL with a password, pointing at a closed
loopback port (no server needed: every open is refused at once). The user must hear one
voice (the project's log lines, credentials masked; no OpenCV/FFmpeg lines), see the
failed attempts in the health counters, and never an outage longer than the run.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DURATION_S = 5.0
# Native log lines: FFmpeg's "[tcp @ 0x55d...] ..." (or, through OpenCV's callback,
# "[OPENCV:FFMPEG:16] ...") and OpenCV's own "[ WARN:0@1.2] global ...".
NATIVE_LINE = re.compile(r"^\[[\w,.\- ]+ @ (0x)?[0-9a-f]+\]|^\[OPENCV:FFMPEG:-?\d+\]"
                         r"|^\[ ?(WARN|ERROR|INFO|DEBUG):\d", re.M)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def down_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("camera_down")
    password = "pw-" + secrets.token_hex(8)
    url = f"rtsp://viewer:{password}@127.0.0.1:{_closed_port()}/cam1"
    config = tmp / "down.yaml"
    config.write_text(
        # Start-up waits open_timeout_s + 1 = 3 s for a first frame, then ticks on.
        f'cameras:\n  - {{id: gate, source: "{url}", stream: {{open_timeout_s: 2}}}}\n'
        f"detector: {{name: yolo, weights: {REPO / 'weights' / 'yolov8n_int8.tflite'}}}\n"
        "reid: {enabled: false}\noutput: {mot: false, plots: false}\nthreads: 1\n")
    # The user's environment asks for no native logs; the run must keep them out itself.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENCV_LOG", "OPENCV_FFMPEG_LOG", "OPENCV_FFMPEG_DEBUG"))}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(config), "--out", str(tmp / "out"),
         "--no-progress", "--duration", str(DURATION_S), "--health-interval", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**env, "YOLO_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    return password, result, summary, tmp / "out"


def test_only_the_projects_masked_lines_reach_the_terminal(down_run):
    password, result, _, out = down_run
    assert "cannot open the stream" in result.stderr  # the project's own warning ...
    assert "rtsp://viewer:***@127.0.0.1" in result.stderr  # ... with the URL masked
    native = NATIVE_LINE.findall(result.stderr + result.stdout)
    assert not native, "OpenCV/FFmpeg lines reached the terminal:\n" + result.stderr[-3000:]
    for text in (result.stderr, result.stdout):
        assert password not in text
    for path in (p for p in out.rglob("*") if p.is_file()):  # run.sqlite is binary
        assert password.encode() not in path.read_bytes(), path


def test_health_counts_failed_opens_and_outage_fits_in_the_run(down_run):
    _, result, summary, _ = down_run
    health = summary["cameras"][0]["health"]
    assert health["frames"] == 0 and health["reconnects"] == 0
    assert health["open_failures"] >= 2, health
    # --duration bounds the whole live run, start-up wait for a silent camera included,
    # so the outage (the camera was never up) is at most the run's length.
    assert health["outage_s"] <= summary["loop_s"] + 0.01, (health, summary["loop_s"])  # rounding
    assert summary["loop_s"] <= DURATION_S + 1.5, summary["loop_s"]
    assert health["outage_s"] >= DURATION_S - 1.5, health
    # The end-of-run table and the periodic health line show the failed attempts.
    header = next(line for line in result.stdout.splitlines() if line.startswith("camera"))
    row = next(line for line in result.stdout.splitlines() if line.startswith("gate"))
    assert "open_failures" in header.split(), header
    assert dict(zip(header.split(), row.split(), strict=True))["open_failures"] == str(
        health["open_failures"])
    health_lines = [line for line in result.stderr.splitlines() if "health gate" in line]
    assert health_lines and all(re.search(r"open failures \d+", line) for line in health_lines)


def test_native_logs_come_back_when_the_user_asks_for_them():
    # OPENCV_FFMPEG_LOGLEVEL=16 (AV_LOG_ERROR) is how one debugs a camera: left as set.
    code = ("from pipeline.sources import StreamSource; "
            f"s = StreamSource(camera_id='gate', uri='rtsp://127.0.0.1:{_closed_port()}/a', "
            "options={'open_timeout_s': 0.5, 'wait_first_s': 1.0}); s.close()")
    env = {**os.environ, "OPENCV_FFMPEG_LOGLEVEL": "16"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    # (OpenCV then prints FFmpeg's lines itself, on stdout.)
    assert re.search(r"^\[OPENCV:FFMPEG:16\] Connection to tcp://127\.0\.0\.1:\d+.* failed",
                     result.stdout, re.M), result.stdout + result.stderr


def test_cameras_share_one_start_up_wait_bounded_by_the_duration():
    import time

    from pipeline.config import CameraConfig
    from pipeline.executor import stream_options_for
    from pipeline.sources import StreamOptions, StreamSource

    camera = CameraConfig(id="gate", source="rtsp://127.0.0.1:1/a",
                          stream={"open_timeout_s": 2.0})
    assert "wait_first_s" not in stream_options_for(camera, 0.0)  # the camera's own
    assert stream_options_for(camera, 0.0, duration_s=60.0)["wait_first_s"] == 3.0
    assert stream_options_for(camera, 0.0, duration_s=1.5)["wait_first_s"] == 1.5
    # Two silent cameras opened in turn wait 1.5 s together (from the run's epoch).
    epoch = time.monotonic()
    sources = [StreamSource(camera_id=f"c{i}", uri=f"rtsp://127.0.0.1:{_closed_port()}/a",
                            epoch_s=epoch,
                            options=StreamOptions(open_timeout_s=0.5, wait_first_s=1.5))
               for i in range(2)]
    waited = time.monotonic() - epoch
    for source in sources:
        source.close()
    assert 1.4 <= waited < 2.6, waited
