"""Soak run: ``mtmc run`` on live RTSP streams for N minutes; memory, drops, latency.

Starts the loopback GStreamer RTSP server of the tests (``tests/rtsp_server.py``, run by
the Debian system python; see ``.ci/run`` for its packages) with ``--cameras`` mounts
serving the sample clip in a loop at 10 fps, runs ``mtmc run --duration`` on them with
the shipped ``configs/sample.yaml`` detector, tracker and re-id (re-id only with
``--reid``) and online association (the cameras' YAML ``stream`` options as given by
``--stream``), injects outages (``--freeze-every``: SIGSTOP the server for
``--freeze-s``; ``--restart-at``: kill it and start a new one on the same port after
``--down-s``), and samples every ``--every`` seconds the run's resident memory, thread
count and open file descriptors (``/proc/<pid>``) and the per-camera health counters
it logs. At the end it compares the rows of ``run.sqlite`` with ``trajectories.csv``
and measures the identity-assignment latency (a track's first row to its first global
id in ``revisions.csv``). Prints one JSON object: the samples, the memory growth after
warm-up, a per-minute table, the checks and the run's summary.

    nice -n 10 python3 -m benchmarks.soak_rtsp --minutes 60 --cameras 4 --reid --every 10 \
        --restart-at 1200 --restart-at 2400
"""

from __future__ import annotations

import argparse
import csv
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

import yaml

REPO = Path(__file__).resolve().parents[1]
HEALTH = re.compile(
    r"health (\S+): (\w+), frames (\d+), dropped (\d+), stale (\d+), reconnects (\d+), "
    r"(?:open failures \d+, )?outage ([\d.]+) s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_stats(pid: int) -> dict[str, float] | None:
    """Resident memory (MB), threads and open file descriptors of a process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    if "VmRSS" not in fields:  # exited (a zombie has no memory)
        return None
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024.0, 1),
            "threads": int(fields["Threads"]), "fds": fds}


class Server:
    """The loopback RTSP server on a fixed port, so a restart serves the same URLs."""

    def __init__(self, *, port: int, password: str, size: tuple[int, int],
                 mounts: list[str]) -> None:
        self.port, self.password, self.size, self.mounts = port, password, size, mounts
        self.process: subprocess.Popen | None = None

    def start(self) -> bool:
        self.process = subprocess.Popen(
            ["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), "--clip",
             str(REPO / "samples" / "pdestre_session3" / "cam1.webm"), "--port",
             str(self.port), *[a for m in self.mounts for a in ("--mount", m)],
             "--user", "soak",
             "--password", self.password, "--width", str(self.size[0]), "--height",
             str(self.size[1])],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.process.stdout is not None
        return self.process.stdout.readline().startswith(b"READY")

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def _soak_config(args: argparse.Namespace, cams: list[str], password: str, port: int
                 ) -> dict:
    """``configs/sample.yaml`` (detector, tracker, re-id, association threshold) on the
    RTSP cameras, online association, re-id only with ``--reid``."""
    shipped = yaml.safe_load((REPO / "configs" / "sample.yaml").read_text())
    configs = REPO / "configs"
    detector = dict(shipped["detector"])
    detector["weights"] = str((configs / detector["weights"]).resolve())
    reid = dict(shipped["reid"])
    reid["weights"] = str((configs / reid["weights"]).resolve())
    if not args.reid:
        reid = {"enabled": False}
    stream = yaml.safe_load(args.stream)
    config = {"cameras": [{"id": c, "source": f"rtsp://soak:{password}@127.0.0.1:{port}/{c}",
                           "stream": stream} for c in cams],
              "detector": detector, "tracker": dict(shipped.get("tracker", {})), "reid": reid,
              "association": {**shipped.get("association", {}), "mode": "online"},
              "output": {"mot": True, "plots": False, "store": True},
              "threads": args.threads}
    for item in filter(None, args.set.split(",")):
        key, _, value = item.partition("=")
        section, _, name = key.strip().partition(".")
        if section not in ("detector", "tracker", "reid", "association") or not name or not _:
            raise SystemExit(f"soak: --set {item!r}: expected SECTION.KEY=VALUE with SECTION "
                             "one of detector, tracker, reid, association")
        config[section][name] = yaml.safe_load(value)
    return config


def _outputs(out: Path) -> dict:
    """Rows of ``run.sqlite`` against ``trajectories.csv``, and the identity-assignment
    latency: per track, its first row's time to its first global id (``revisions.csv``)."""
    import sqlite3

    import numpy as np

    csv_path, store = out / "trajectories.csv", out / "run.sqlite"
    if not csv_path.exists():
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    first: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (r["camera"], r["track_id"])
        first[key] = min(first.get(key, float("inf")), float(r["timestamp_s"]))
    stored = None
    if store.exists():
        with sqlite3.connect(store) as db:
            stored = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    latency = []
    assigned: set[tuple[str, str]] = set()
    if (out / "revisions.csv").exists():
        with open(out / "revisions.csv", newline="") as f:
            for r in csv.DictReader(f):
                key = (r["camera"], r["track_id"])
                if key in assigned or r["new_global_id"] == "-1" or key not in first:
                    continue
                assigned.add(key)
                latency.append(float(r["time_s"]) - first[key])
    lat = np.array(latency) if latency else np.zeros(0)
    return {"rows_csv": len(rows), "rows_store": stored,
            "store_equals_csv": stored == len(rows),
            "assignment_latency_s": {
                "tracks": len(first), "assigned": len(latency),
                "p50": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
                "p95": round(float(np.percentile(lat, 95)), 2) if len(lat) else None}}


def _schedule(args: argparse.Namespace, duration: float) -> list[tuple[float, str]]:
    """(time s, action) of the injected outages, in time order."""
    events = []
    if args.freeze_every > 0:
        t = args.freeze_every
        while t + args.freeze_s < duration - 10:
            if not any(r - args.freeze_s - 10 <= t <= r + args.down_s + 20
                       for r in args.restart_at):
                events += [(t, "freeze"), (t + args.freeze_s, "resume")]
            t += args.freeze_every
    for r in args.restart_at:
        events += [(r, "kill"), (r + args.down_s, "start")]
    return sorted(events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=5.0, help="sampling period, s")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="seconds excluded from the memory-growth figure")
    parser.add_argument("--freeze-every", type=float, default=0.0,
                        help="SIGSTOP the server for --freeze-s every this many s (0 = never)")
    parser.add_argument("--freeze-s", type=float, default=5.0)
    parser.add_argument("--restart-at", type=float, action="append", default=[],
                        metavar="S", help="kill the server at S s, start it --down-s later")
    parser.add_argument("--down-s", type=float, default=5.0)
    parser.add_argument("--stream", default="{open_timeout_s: 5, read_timeout_s: 3, stall_s: 2, "
                        "queue_size: 4, rtsp_transport: tcp}",
                        help="YAML 'stream' mapping of both cameras")
    parser.add_argument("--reid", action="store_true", help="embed crops with re-id too")
    parser.add_argument("--size", default="640x360", help="stream size WxH")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cameras", type=int, default=2, help="RTSP cameras (mounts)")
    parser.add_argument("--set", default="", metavar="SECTION.KEY=VALUE[,...]",
                        help="change the sample config's settings, e.g. detector.every=2")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    work = Path(tempfile.mkdtemp(prefix="soak_rtsp_"))
    cams = [f"cam{i + 1}" for i in range(args.cameras)]
    server = Server(port=_free_port(), password=secrets.token_hex(8), size=(width, height),
                    mounts=cams)
    if not server.start():
        print("soak: the RTSP server did not start (GStreamer packages missing?)",
              file=sys.stderr)
        return 2
    password, port = server.password, server.port
    config = work / "soak.yaml"
    config.write_text(yaml.safe_dump(_soak_config(args, cams, password, port)))
    duration = args.minutes * 60.0
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(config), "--out", str(work / "out"),
         "--no-progress", "--duration", str(duration), "--health-interval", str(args.every)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "YOLO_OFFLINE": "1"})
    health: dict[str, dict] = {}
    log_tail: list[str] = []
    leaked: list[bool] = []
    last_health_s: list[float] = [0.0]  # when the last health line came (run time)

    def read_log() -> None:
        assert run.stdout is not None
        with open(work / "mtmc.log", "w") as log:
            for raw in run.stdout:
                line = raw.decode(errors="replace").rstrip()
                log.write(line + "\n")
                log_tail[:] = (log_tail + [line])[-30:]
                if password in line:
                    leaked.append(True)
                _parse_health(line)

    def _parse_health(line: str) -> None:
        match = HEALTH.search(line)
        if match:
            last_health_s[0] = time.monotonic() - start
            cam, state, frames, dropped, stale, reconnects, outage = match.groups()
            health[cam] = {"state": state, "frames": int(frames), "dropped": int(dropped),
                           "stale": int(stale), "reconnects": int(reconnects),
                           "outage_s": float(outage)}

    start = time.monotonic()
    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    events = _schedule(args, duration)
    done_events: list[dict] = []
    samples: list[dict] = []
    next_sample = args.every
    try:
        while run.poll() is None:
            time.sleep(0.2)
            t = time.monotonic() - start
            while events and events[0][0] <= t:
                _, action = events.pop(0)
                if action == "freeze":
                    server.signal(signal.SIGSTOP)
                elif action == "resume":
                    server.signal(signal.SIGCONT)
                elif action == "kill":
                    server.kill()
                elif action == "start" and not server.start():
                    print("soak: the RTSP server did not restart", file=sys.stderr)
                done_events.append({"t_s": round(t, 1), "action": action})
            if t >= next_sample:
                next_sample += args.every
                stats = _process_stats(run.pid)
                if stats is not None:
                    samples.append({"t_s": round(t, 1), **stats,
                                    "cameras": json.loads(json.dumps(health))})
        run.wait()
    finally:
        if run.poll() is None:
            run.terminate()
        server.kill()
    reader.join(timeout=5)
    summary_path = work / "out" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    # Steady state: after the warm-up (models loading) and before the shutdown (the
    # last health line; afterwards the run finishes its files and frees memory).
    steady = [s for s in samples if args.warmup <= s["t_s"] <= last_health_s[0] + 0.5]
    growth = slope = None
    if len(steady) >= 2:
        span_min = (steady[-1]["t_s"] - steady[0]["t_s"]) / 60.0
        growth = round((steady[-1]["rss_mb"] - steady[0]["rss_mb"]) / span_min, 2)
        ts = [s["t_s"] / 60.0 for s in steady]
        rs = [s["rss_mb"] for s in steady]
        mean_t, mean_r = sum(ts) / len(ts), sum(rs) / len(rs)
        slope = round(sum((t - mean_t) * (r - mean_r) for t, r in zip(ts, rs, strict=True))
                      / sum((t - mean_t) ** 2 for t in ts), 3)
    per_minute = []
    for minute in range(1, int(args.minutes) + 1):
        last = [s for s in samples if s["t_s"] <= minute * 60.0 + 1e-6]
        if last:
            s = last[-1]
            per_minute.append({"t_s": s["t_s"], "rss_mb": s["rss_mb"], "threads": s["threads"],
                               "fds": s["fds"], **{f"{c}_{k}": v[k] for c, v in
                                                   sorted(s["cameras"].items())
                                                   for k in ("frames", "dropped", "reconnects")}})
    report = {
        "minutes": args.minutes, "size": args.size, "reid": args.reid,
        "stream_options": args.stream, "events": done_events, "exit_code": run.returncode,
        "rss_mb": {"first": samples[0]["rss_mb"] if samples else None,
                   "after_warmup": steady[0]["rss_mb"] if steady else None,
                   "last": samples[-1]["rss_mb"] if samples else None,
                   "max": max((s["rss_mb"] for s in samples), default=None),
                   "last_steady": steady[-1]["rss_mb"] if steady else None,
                   "growth_mb_per_min_after_warmup": growth,
                   "fitted_slope_mb_per_min_after_warmup": slope,
                   "steady_window_s": [steady[0]["t_s"], steady[-1]["t_s"]] if steady
                   else None},
        "threads": {"min": min((s["threads"] for s in steady), default=None),
                    "max": max((s["threads"] for s in steady), default=None)},
        "fds": {"min": min((s["fds"] for s in steady), default=None),
                "max": max((s["fds"] for s in steady), default=None)},
        "per_minute": per_minute,
        "cameras": {c["id"]: c.get("health") for c in summary["cameras"]} if summary else None,
        "camera_frames_per_s": summary["camera_frames_per_s"] if summary else None,
        "rows": summary["rows"] if summary else None,
        "identities": summary["identities"] if summary else None,
        "revisions": summary["revisions"] if summary else None,
        "password_in_outputs": any(
            password.encode() in p.read_bytes() for p in (work / "out").rglob("*")
            if p.is_file()) or bool(leaked),
        "samples": samples,
        "out": str(work / "out"),
    }
    report.update(_outputs(work / "out"))
    if summary is None:
        report["log_tail"] = log_tail
    print(json.dumps(report, indent=1))
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
