"""Live cameras against a REAL RTSP server on loopback (GStreamer, ``rtsp_server.py``).

The server runs under the Debian system python, which has the GStreamer bindings that
``.ci/run`` installs; these tests skip (saying why) only when that server cannot start.
The server is frozen (SIGSTOP) and resumed, killed and restarted while a source or a
whole ``mtmc run`` reads it; the run must keep going, reconnect, count the outage, keep
its CSV files whole, and never write the password anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.export import read_revisions, read_trajectories
from pipeline.sources import StreamOptions, StreamSource, live_ticks, redact_url
from tests.conftest import REPO
from tests.test_camera_down import NATIVE_LINE

CLIP = REPO / "samples" / "pdestre_session3" / "cam1.webm"
SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
USER = "viewer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class RtspServer:
    """One ``rtsp_server.py`` process on a fixed port (so a restart reuses the URL)."""

    def __init__(self, tmp: Path, mounts: tuple[str, ...] = ("cam1",)) -> None:
        self.port = _free_port()
        self.password = "pw-" + secrets.token_hex(8)
        self.mounts = mounts
        self.log = tmp / f"rtsp_server_{self.port}.log"
        self.process: subprocess.Popen | None = None

    def url(self, mount: str = "cam1") -> str:
        return f"rtsp://{USER}:{self.password}@127.0.0.1:{self.port}/{mount}"

    def start(self) -> None:
        command = ["nice", "-n", "10", SYSTEM_PYTHON, str(SERVER), "--clip", str(CLIP),
                   "--port", str(self.port), "--user", USER, "--password", self.password,
                   "--max-frames", "100"]
        for mount in self.mounts:
            command += ["--mount", mount]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()  # READY <port>, or EOF on failure
        if not line.startswith("READY"):
            self.process.wait(timeout=10)
            raise RuntimeError(f"RTSP server did not start: {self.log.read_text()[-500:]}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen process must die too
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def _server_or_skip(tmp_path: Path, mounts: tuple[str, ...] = ("cam1",)) -> RtspServer:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} (Debian system python with python3-gi) not found")
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import GstRtspServer"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("GStreamer RTSP server bindings missing (install python3-gi "
                    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-*; .ci/run does): "
                    + probe.stderr.strip().splitlines()[-1])
    server = RtspServer(tmp_path, mounts)
    try:
        server.start()
    except RuntimeError as error:
        pytest.skip(str(error))
    return server


@pytest.fixture
def rtsp(tmp_path):
    server = _server_or_skip(tmp_path)
    yield server
    server.kill()


def test_redact_url():
    assert redact_url("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101") == \
        "rtsp://admin:***@10.0.0.5:554/Streaming/101"
    assert redact_url("http://cam.local/video.mjpg?user=a&password=hunter2&fps=5") == \
        "http://cam.local/video.mjpg?user=a&password=***&fps=5"
    assert redact_url("rtsp://p%40ss:w@rd@host/x").endswith("***@host/x")
    assert "hunter2" not in redact_url("rtsps://u:hunter2@[::1]:322/x?token=hunter2")
    assert redact_url("rtsp://host/x") == "rtsp://host/x"
    assert redact_url(0) == "0" and redact_url("/data/cam.mp4") == "/data/cam.mp4"


class _FakeLive:
    def __init__(self, camera_id: str, frames: list) -> None:
        self.camera_id, self.frames = camera_id, frames

    def latest(self):
        return self.frames.pop() if self.frames else None


def test_live_ticks_take_newest_and_skip_silent_cameras():
    a = _FakeLive("a", ["a0", "a1"])
    b = _FakeLive("b", ["b0"])
    ticks = list(live_ticks([a, b], period_s=0.01, max_ticks=3, duration_s=0.3))
    assert ticks == [["a1", "b0"], ["a0"]]  # then nothing new until the duration ends


_SIGNALS_CHECK = """
import os, signal, threading, time
from pipeline.runtime import stop_on_signals
stop = threading.Event()
try:
    with stop_on_signals(stop, enabled=True) as received:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.is_set(), "the SIGTERM handler did not set stop"
        os.kill(os.getpid(), signal.SIGINT)  # SIGINT after a stop request: abort now
        time.sleep(5)
    raise SystemExit("no KeyboardInterrupt")
except KeyboardInterrupt:
    pass
assert received == ["SIGTERM"], received
assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
print("ok")
"""


def test_signals_stop_cleanly_and_second_ctrl_c_aborts():
    # In its own process: the signals are real, and a handler that failed to install
    # must fail this test, not kill the test session.
    result = subprocess.run([sys.executable, "-c", _SIGNALS_CHECK], capture_output=True,
                            text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_stream_source_survives_freeze_kill_and_restart(rtsp, caplog):
    caplog.set_level(logging.INFO)
    source = StreamSource(camera_id="door", uri=rtsp.url(), options=StreamOptions(
        open_timeout_s=3.0, read_timeout_s=2.0, stall_s=1.5, backoff_initial_s=0.2,
        backoff_max_s=1.0, queue_size=3))
    try:
        assert source.size_wh == (640, 360) and source.fps == pytest.approx(10.0)
        first = source.read(timeout_s=10)
        assert first is not None and first.camera_id == "door"

        rtsp.signal(signal.SIGSTOP)
        _wait(lambda: source.health()["outages"] >= 1, 15, "the freeze to be detected")
        time.sleep(1.0)
        rtsp.signal(signal.SIGCONT)
        _wait(lambda: source.health()["reconnects"] >= 1, 20, "reconnection after SIGCONT")
        after_freeze = source.health()
        assert after_freeze["state"] == "connected" and after_freeze["outage_s"] >= 1.5

        rtsp.kill()
        _wait(lambda: source.health()["state"] == "reconnecting", 10, "the kill to be noticed")
        time.sleep(2.0)
        assert source.health()["open_failures"] >= 1  # refused while the server is down
        rtsp.start()
        _wait(lambda: source.health()["reconnects"] >= 2, 20, "reconnection after restart")
        _wait(lambda: source.read(timeout_s=1) is not None, 10, "fresh frames")
        health = source.health()
        assert health["outages"] >= 2 and health["outage_s"] > after_freeze["outage_s"] + 2
        assert health["frames"] > 10 and health["dropped"] >= 0
        # Indices keep counting across reconnects; timestamps increase.
        later = source.read(timeout_s=5)
        assert later is not None and later.index > first.index
        assert later.timestamp_s > first.timestamp_s + 4
    finally:
        source.close()
    text = caplog.text + repr(source) + json.dumps(source.health())
    assert "reconnect" in caplog.text and f"{USER}:***@" in caplog.text
    assert rtsp.password not in text


def _mtmc_run(tmp: Path, server: RtspServer, *extra: str) -> tuple[subprocess.Popen, Path]:
    config = tmp / "live.yaml"
    # Reader settings through the cameras' YAML ``stream`` mapping (the real path).
    stream = "{open_timeout_s: 3, read_timeout_s: 2, stall_s: 1.5, backoff_max_s: 2}"
    cameras = "\n".join(f'  - {{id: {m}, source: "{server.url(m)}", stream: {stream}}}'
                         for m in server.mounts)
    config.write_text(
        f"cameras:\n{cameras}\n"
        f"detector: {{name: yolo, weights: {REPO / 'weights' / 'yolov8n_int8.tflite'}}}\n"
        "reid: {enabled: false}\n"
        "association: {mode: online, min_s: 0.5, lag_s: 5}\n"
        "output: {mot: true, plots: false}\nthreads: 1\n")
    out = tmp / "out"
    log = open(tmp / "mtmc.log", "wb")  # noqa: SIM115 - closed by the caller via wait()
    process = subprocess.Popen(
        ["nice", "-n", "10", sys.executable, "-m", "pipeline.cli", "run", str(config), "--out",
         str(out), "--no-progress", "--health-interval", "2", *extra],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "YOLO_OFFLINE": "1"})
    return process, out


def _data_rows(path: Path) -> int:
    return max(0, len(path.read_bytes().splitlines()) - 1) if path.exists() else 0


def _rows_per_camera(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in path.read_bytes().splitlines()[1:]:
        camera = line.split(b",", 1)[0].decode()
        counts[camera] = counts.get(camera, 0) + 1
    return counts


def test_mtmc_run_keeps_going_through_outages_and_stops_on_sigterm(tmp_path):
    server = _server_or_skip(tmp_path, mounts=("cam1", "cam2"))
    process, out = _mtmc_run(tmp_path, server)
    csv = out / "trajectories.csv"
    try:
        _wait(lambda: _data_rows(csv) > 0, 90, "the first rows of trajectories.csv")
        time.sleep(2)
        server.signal(signal.SIGSTOP)
        time.sleep(4)
        server.signal(signal.SIGCONT)
        before_kill = _data_rows(csv)
        time.sleep(4)
        server.kill()
        time.sleep(3)
        server.start()
        at_restart = _rows_per_camera(csv)
        _wait(lambda: all(_rows_per_camera(csv).get(c, 0) > at_restart.get(c, 0) + 2
                          for c in server.mounts), 60, "rows of every camera after the restart")
        assert process.poll() is None, "mtmc run died during the outages"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0  # SIGTERM is a clean stop
    finally:
        if process.poll() is None:
            process.kill()
        server.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["live"] and summary["stopped_by"] == "SIGTERM"
    assert summary["association"] == "online"
    for camera in summary["cameras"]:
        health = camera["health"]
        assert health["reconnects"] >= 2 and health["outages"] >= 2, health
        assert health["outage_s"] >= 4.0, health
        assert camera["source"].startswith(f"rtsp://{USER}:***@127.0.0.1")
    rows = read_trajectories(csv)
    assert len(rows) == summary["rows"] > before_kill
    for camera in ("cam1", "cam2"):
        times = rows.timestamp_s[rows.camera == camera]
        assert len(times) and (times[1:] >= times[:-1]).all()
    # Rows exist before the freeze and after the restart (the run kept writing).
    assert rows.timestamp_s.max() - rows.timestamp_s.min() > 12
    assert len(read_trajectories(out / "trajectories_final.csv")) == len(rows)
    read_revisions(out / "revisions.csv")
    log = (tmp_path / "mtmc.log").read_text()
    assert "health cam1" in log and "reconnected" in log
    # One voice through freeze, kill and restart: no OpenCV/FFmpeg line of their own.
    assert not NATIVE_LINE.search(log), log[-3000:]
    for path in [tmp_path / "mtmc.log", *out.rglob("*")]:
        if path.is_file():
            assert server.password.encode() not in path.read_bytes(), path


def test_kill_9_leaves_parseable_csv(rtsp, tmp_path):
    process, out = _mtmc_run(tmp_path, rtsp)
    csv = out / "trajectories.csv"
    try:
        _wait(lambda: _data_rows(csv) > 20, 90, "rows in trajectories.csv")
        time.sleep(1.3)  # land somewhere between two flushes
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not (out / "summary.json").exists()
    rows = read_trajectories(csv)
    assert len(rows) >= 20 and csv.read_bytes().endswith(b"\n")
    read_revisions(out / "revisions.csv")
    for name in ("cam1.txt",):
        text = (out / "mot" / name).read_text()
        assert all(len(line.split(",")) == 10 for line in text.splitlines())
