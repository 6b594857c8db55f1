"""Soak run: ``mtmc run`` on two live RTSP streams for N minutes; memory and drops.

Starts the loopback GStreamer RTSP server of the tests (``tests/rtsp_server.py``, run by
the Debian system python; see ``.ci/run`` for its packages) with two mounts serving the
sample clip in a loop, runs ``mtmc run --duration`` on them (detector + tracker +
online association; re-id with ``--reid``), optionally freezes the server now and then
to inject outages, and samples every ``--every`` seconds the run's resident memory
(``/proc/<pid>/status`` VmRSS) and the per-camera health counters it logs. Prints one
JSON object: the samples, the memory growth after warm-up, and the run's summary.

    nice -n 10 python3 benchmarks/soak_rtsp.py --minutes 2 --every 5 --freeze-every 40
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEALTH = re.compile(
    r"health (\S+): (\w+), frames (\d+), dropped (\d+), stale (\d+), reconnects (\d+), "
    r"outage ([\d.]+) s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=5.0, help="sampling period, s")
    parser.add_argument("--warmup", type=float, default=20.0,
                        help="seconds excluded from the memory-growth figure")
    parser.add_argument("--freeze-every", type=float, default=0.0,
                        help="SIGSTOP the server for --freeze-s every this many s (0 = never)")
    parser.add_argument("--freeze-s", type=float, default=5.0)
    parser.add_argument("--reid", action="store_true", help="embed crops with re-id too")
    parser.add_argument("--size", default="640x360", help="stream size WxH")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    work = Path(tempfile.mkdtemp(prefix="soak_rtsp_"))
    port, password = _free_port(), secrets.token_hex(8)
    server = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), "--clip",
         str(REPO / "samples" / "pdestre_session3" / "cam1.webm"), "--port", str(port),
         "--mount", "cam1", "--mount", "cam2", "--user", "soak", "--password", password,
         "--width", str(width), "--height", str(height)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert server.stdout is not None
    if not server.stdout.readline().startswith(b"READY"):
        print("soak: the RTSP server did not start (GStreamer packages missing?)",
              file=sys.stderr)
        return 2
    reid = "{enabled: true}" if args.reid else "{enabled: false}"
    config = work / "soak.yaml"
    config.write_text(
        "cameras:\n"
        + "".join(f'  - {{id: {c}, source: "rtsp://soak:{password}@127.0.0.1:{port}/{c}"}}\n'
                  for c in ("cam1", "cam2"))
        + f"detector: {{name: yolo, weights: {REPO / 'weights' / 'yolov8n_int8.tflite'}}}\n"
        f"reid: {reid}\nassociation: {{mode: online}}\n"
        f"output: {{mot: true, plots: false}}\nthreads: {args.threads}\n")
    duration = args.minutes * 60.0
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(config), "--out", str(work / "out"),
         "--no-progress", "--duration", str(duration), "--health-interval", str(args.every)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "YOLO_OFFLINE": "1"})
    health: dict[str, dict] = {}
    log_tail: list[str] = []

    def read_log() -> None:
        assert run.stdout is not None
        for raw in run.stdout:
            line = raw.decode(errors="replace").rstrip()
            log_tail[:] = (log_tail + [line])[-30:]
            match = HEALTH.search(line)
            if match:
                cam, state, frames, dropped, stale, reconnects, outage = match.groups()
                health[cam] = {"state": state, "frames": int(frames), "dropped": int(dropped),
                               "stale": int(stale), "reconnects": int(reconnects),
                               "outage_s": float(outage)}

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    start = time.monotonic()
    samples, next_freeze = [], args.freeze_every or float("inf")
    freezes = 0
    try:
        while run.poll() is None:
            time.sleep(args.every)
            t = time.monotonic() - start
            if t >= next_freeze:
                server.send_signal(signal.SIGSTOP)
                time.sleep(args.freeze_s)
                server.send_signal(signal.SIGCONT)
                freezes += 1
                next_freeze += args.freeze_every
            rss = _rss_mb(run.pid)
            if rss is not None:
                samples.append({"t_s": round(t, 1), "rss_mb": round(rss, 1),
                                "cameras": json.loads(json.dumps(health))})
        run.wait()
    finally:
        if run.poll() is None:
            run.terminate()
        server.send_signal(signal.SIGCONT)
        server.kill()
    reader.join(timeout=5)
    summary_path = work / "out" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    steady = [s for s in samples if s["t_s"] >= args.warmup]
    growth = None
    if len(steady) >= 2:
        span_min = (steady[-1]["t_s"] - steady[0]["t_s"]) / 60.0
        growth = round((steady[-1]["rss_mb"] - steady[0]["rss_mb"]) / span_min, 2)
    report = {
        "minutes": args.minutes, "size": args.size, "reid": args.reid,
        "freezes": freezes, "freeze_s": args.freeze_s, "exit_code": run.returncode,
        "rss_mb": {"first": samples[0]["rss_mb"] if samples else None,
                   "after_warmup": steady[0]["rss_mb"] if steady else None,
                   "last": samples[-1]["rss_mb"] if samples else None,
                   "max": max((s["rss_mb"] for s in samples), default=None),
                   "growth_mb_per_min_after_warmup": growth},
        "cameras": {c["id"]: c.get("health") for c in summary["cameras"]} if summary else None,
        "camera_frames_per_s": summary["camera_frames_per_s"] if summary else None,
        "rows": summary["rows"] if summary else None,
        "identities": summary["identities"] if summary else None,
        "revisions": summary["revisions"] if summary else None,
        "password_in_outputs": any(
            password.encode() in p.read_bytes() for p in (work / "out").rglob("*")
            if p.is_file()) or any(password in line for line in log_tail),
        "samples": samples,
        "out": str(work / "out"),
    }
    if summary is None:
        report["log_tail"] = log_tail
    print(json.dumps(report, indent=1))
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
