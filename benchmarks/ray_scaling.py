"""Scaling of the Ray executor on this machine: the sample's clips replayed as many cameras.

Usage (from the repository root; on a shared machine under the timing lock):
    flock /tmp/cpu.lock nice -n 5 python3 -m benchmarks.ray_scaling \\
        [--cameras 8,16] [--frames 16] [--repeats 3] [--association 250,500,1000,2000]

For each camera count the four sample clips are replayed as that many cameras (cam1..4
repeated) and the same short run (``--frames`` ticks, the shipped sample config) is
made three ways, side by side in every repeat: in one process (the baseline), on Ray
with one worker process (``executor.threads`` 2: both cores) and with two (one core
each). Every run is a fresh subprocess (its own Ray started with ``--ray local``).
Reported per way: throughput in camera-frames/s over the frame loop (``loop_s`` of the
summary: the models are loaded before it starts), its median over the repeats, the
speed-up over the baseline and the parallel efficiency (speed-up / workers), the
resident memory of the driver and of each worker at the end, and what crossed from the
workers to the driver per camera and second of footage (pickled updates, checkpoints)
next to what frames would be (raw BGR, and the clips' compressed bitrate).

``--association`` also times the offline association (average linkage over all pairs)
on synthetic tracklets (512-d embeddings, one identity per 4 tracklets, 16 cameras)
of those counts: how its cost grows with the number of tracklets.

Prints JSON (docs/SCALE.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the command line sets it
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "configs" / "sample.yaml"
CLIPS = [REPO / "samples" / "pdestre_session3" / f"cam{i}.webm" for i in range(1, 5)]
WAYS = {"single": None, "ray_1_worker": 1, "ray_2_workers": 2}


def _config(cameras: int, workers: int | None) -> Any:
    from pipeline.config import config_from_dict

    data = yaml.safe_load(SAMPLE.read_text())
    data["cameras"] = [{"id": f"cam{i + 1:02d}", "source": str(CLIPS[i % len(CLIPS)])}
                       for i in range(cameras)]
    data["output"] = {"mot": False, "plots": False, "save_video": False}
    if workers is not None:
        data["executor"] = {"name": "ray", "address": "local", "workers": workers,
                            "threads": max(1, 2 // workers), "num_cpus_per_worker": 1,
                            "checkpoint_frames": 40}
    return config_from_dict(data, base_dir=SAMPLE.parent, where=f"{cameras} cameras")


def one_run(cameras: int, workers: int | None, frames: int, out: Path) -> dict[str, Any]:
    """One run in this process; the figures the parent collects."""
    from pipeline.runner import RunOptions, run

    start = time.perf_counter()
    summary = run(_config(cameras, workers), out,
                  RunOptions(max_frames=frames, progress=False, handle_signals=False))
    result = {"camera_frames": summary["camera_frames"], "loop_s": summary["loop_s"],
              "camera_frames_per_s": summary["camera_frames_per_s"],
              "wall_s": round(time.perf_counter() - start, 1),
              "identities": summary["identities"], "rows": summary["rows"],
              "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                          / 1024, 1)}
    if workers is not None:
        ws = summary["executor"]["workers"]
        result["worker_rss_mb"] = [w["rss_mb_end"] for w in ws]
        result["update_bytes"] = sum(w["update_bytes"] for w in ws)
        result["checkpoint_bytes"] = sum(w["checkpoint_bytes"] for w in ws)
    return result


def _child(cameras: int, workers: int | None, frames: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "benchmarks.ray_scaling", "--one",
                   f"{cameras},{workers or 0},{frames}", "--out", tmp]
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0",
               "YOLO_OFFLINE": "1"}
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"run failed ({cameras} cameras, workers {workers}):\n"
                               + done.stderr[-3000:])
        return json.loads(done.stdout.strip().splitlines()[-1])


def _frame_bytes() -> dict[str, float]:
    """Per camera and second: raw BGR frames, and the sample clips' compressed bitrate."""
    import cv2

    capture = cv2.VideoCapture(str(CLIPS[0]))
    width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    capture.release()
    seconds = 15.0  # each sample clip: 150 frames at 10 fps
    return {"raw_bgr_bytes_per_s": width * height * 3 * fps,
            "compressed_bytes_per_s": statistics.mean(c.stat().st_size for c in CLIPS) / seconds,
            "fps": fps}


def association_cost(sizes: list[int], repeats: int = 3) -> list[dict[str, Any]]:
    """Median seconds of the offline association of N synthetic tracklets."""
    import numpy as np

    from pipeline.association import OfflineAssociator
    from pipeline.types import Tracklet

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        people = rng.normal(size=(max(1, n // 4), 512)).astype(np.float32)
        tracklets = []
        for i in range(n):
            v = people[i % len(people)] + 0.6 * rng.normal(size=512).astype(np.float32)
            start = float(rng.uniform(0, 600))
            frames = np.arange(20)
            tracklets.append(Tracklet(camera_id=f"cam{i % 16:02d}", track_id=i // 16 + 1,
                                      frames=frames, timestamps_s=start + frames / 10.0,
                                      xyxy=np.tile([10.0, 10.0, 50.0, 150.0], (20, 1)),
                                      embedding=v / np.linalg.norm(v), quality=1.0))
        times = []
        for _ in range(repeats):
            associator = OfflineAssociator()
            start = time.perf_counter()
            associator.associate(tracklets)
            times.append(time.perf_counter() - start)
        rows.append({"tracklets": n, "seconds": round(statistics.median(times), 3)})
    return rows


def knn_cost(sizes: list[int], queries: int = 100, k: int = 10) -> list[dict[str, Any]]:
    """Exact top-k cosine search (one matrix product) of ``queries`` new tracklets among
    N stored 512-d embeddings: the brute-force baseline an ANN index replaces."""
    import numpy as np

    rng = np.random.default_rng(1)
    rows = []
    for n in sizes:
        stored = rng.normal(size=(n, 512)).astype(np.float32)
        stored /= np.linalg.norm(stored, axis=1, keepdims=True)
        query = stored[:queries] + 0.1
        times = []
        for _ in range(3):
            start = time.perf_counter()
            scores = query @ stored.T
            np.argpartition(-scores, k, axis=1)[:, :k]
            times.append(time.perf_counter() - start)
        rows.append({"stored": n, "queries": queries,
                     "ms_per_query": round(1000 * statistics.median(times) / queries, 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", default="8,16")
    parser.add_argument("--frames", type=int, default=16, help="ticks per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--association", default="250,500,1000",
                        help="tracklet counts to time the offline association on ('' = no)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        cameras, workers, frames = (int(x) for x in args.one.split(","))
        print(json.dumps(one_run(cameras, workers or None, frames, args.out)))
        return 0
    counts = [int(c) for c in args.cameras.split(",") if c]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        str(c): {way: [] for way in WAYS} for c in counts}
    for repeat in range(args.repeats):
        for cameras in counts:
            for way, workers in WAYS.items():  # side by side in every repeat
                result = _child(cameras, workers, args.frames)
                runs[str(cameras)][way].append(result)
                print(f"repeat {repeat + 1} cameras {cameras} {way}: "
                      f"{result['camera_frames_per_s']} camera-frames/s", file=sys.stderr)
    frame = _frame_bytes()
    report: dict[str, Any] = {"frames_per_run": args.frames, "repeats": args.repeats,
                              "cpus": os.cpu_count(), "frames_bytes_per_camera_s": frame,
                              "cameras": {}}
    for cameras, ways in runs.items():
        base = statistics.median(r["camera_frames_per_s"] for r in ways["single"])
        table = {}
        for way, results in ways.items():
            fps = statistics.median(r["camera_frames_per_s"] for r in results)
            workers = WAYS[way] or 1
            row = {"camera_frames_per_s": round(fps, 2),
                   "all": [r["camera_frames_per_s"] for r in results],
                   "speedup": round(fps / base, 3),
                   "parallel_efficiency": round(fps / base / workers, 3),
                   "driver_peak_rss_mb": statistics.median(r["driver_peak_rss_mb"]
                                                           for r in results),
                   "identities": [r["identities"] for r in results],
                   "rows": [r["rows"] for r in results]}
            if WAYS[way] is not None:
                last = results[-1]
                footage_s = last["camera_frames"] / frame["fps"]  # camera-seconds
                row["worker_rss_mb"] = last["worker_rss_mb"]
                row["update_bytes_per_camera_s"] = round(last["update_bytes"] / footage_s)
                row["checkpoint_bytes_per_camera_s"] = round(last["checkpoint_bytes"]
                                                             / footage_s)
            table[way] = row
        report["cameras"][cameras] = table
    sizes = [int(s) for s in args.association.split(",") if s]
    if sizes:
        report["offline_association"] = association_cost(sizes)
        report["exact_knn"] = knn_cost([10_000, 100_000])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
