"""End-to-end speed: our pipeline vs ultralytics track mode, side by side, median of runs.

Scenes: ``sample`` (``configs/sample.yaml``, 4 cameras x 150 frames, 960x540) and
``pets09`` (``configs/pets09_s2l1.yaml``, 795 frames, 768x576). Variants per scene:

* ``ours``: ``mtmc run`` on the scene's config (``pipeline.runner.run``) as shipped;
* ``ours-motion``: the same with ``reid.enabled: false`` (the motion-only pipeline, what
  ultralytics' trackers do);
* ``ultralytics``: ``YOLO(weights).track(video, tracker="bytetrack.yaml")`` per camera
  (one after the other), with the config's detector file and settings; its runtime gets the
  same thread count as ours (``--threads``);
* ``ultralytics-openvino``: the same on ultralytics' own OpenVINO export of the config's
  ``.pt`` file (``benchmarks/peer_trackers.py``'s ``openvino_export``; skipped for other
  files), the runtime our configs use.

Levers: ``--lever NAME=KEY=VALUE[,KEY=VALUE...]`` adds a variant ``NAME``, the shipped
config with those settings changed (``detector.KEY`` a detector parameter, ``reid.KEY`` a
re-id field, ``run.KEY`` a top-level key such as ``run.decode_ahead``; values are YAML),
run in turn with the others, e.g.
``--lever int8=detector.precision=int8,reid.precision=int8``.

Every run is its own process (fresh memory; peak RSS from ``os.wait4``); runs take turns
variant by variant within a repeat so all share the same background load, and ratios are
taken per repeat (against each ultralytics variant), then the median. Frames/s counts
camera-frames over the frame loop after models are loaded (ours: the runner's ``loop_s``;
ultralytics: after a warm-up call);
``process_s`` is the whole process (imports, model loading, export) for reference.

    flock /tmp/cpu.lock nice -n 5 python3 -m benchmarks.speed --repeats 3 --json runs/speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from benchmarks.lib.levers import apply_overrides, parse_lever

REPO = Path(__file__).resolve().parents[1]
SCENES = {"sample": REPO / "configs" / "sample.yaml",
          "pets09": REPO / "configs" / "pets09_s2l1.yaml"}
VARIANTS = ("ours", "ours-motion", "ultralytics", "ultralytics-openvino")


# ------------------------------------------------------------------------------ workers
def worker_ours(config_path: Path, max_frames: int | None, motion_only: bool,
                overrides: dict[str, object] | None = None) -> dict:
    """One pipeline run in this process; the runner's summary figures."""
    from pipeline.config import load_config
    from pipeline.runner import RunOptions, run

    config = apply_overrides(load_config(config_path), overrides or {})
    if motion_only:
        config = replace(config, reid=replace(config.reid, enabled=False))
    with tempfile.TemporaryDirectory() as out:
        summary = run(config, Path(out), RunOptions(max_frames=max_frames, progress=False,
                                                    handle_signals=False))
    return {"camera_frames": summary["camera_frames"], "loop_s": summary["loop_s"],
            "camera_frames_per_s": summary["camera_frames_per_s"],
            "stage_ms_per_camera_frame": summary["stage_ms_per_camera_frame"],
            "threads": summary.get("threads"), "reid": summary.get("reid"),
            "identities": summary.get("identities")}


def worker_ultralytics(config_path: Path, max_frames: int | None, threads: int,
                       openvino: bool = False) -> dict:
    """``YOLO.track`` over each camera's video in turn; summed loop time."""
    from benchmarks.peer_trackers import detector_settings, openvino_export, run_ultralytics_track
    from pipeline.config import load_config

    config = load_config(config_path)
    settings = detector_settings(config_path)
    if openvino:
        settings = openvino_export(settings)
    frames, loop_s, stages = 0, 0.0, {}
    for camera in config.cameras:
        _, timing = run_ultralytics_track(settings, "bytetrack", max_frames, threads,
                                          video=Path(camera.source))
        frames += timing["frames"]
        loop_s += timing["loop_s"]
        for k, v in timing["stage_ms_per_frame"].items():
            stages[k] = stages.get(k, 0.0) + v * timing["frames"]
    return {"camera_frames": frames, "loop_s": round(loop_s, 3),
            "camera_frames_per_s": round(frames / loop_s, 2),
            "stage_ms_per_camera_frame": {k: round(v / frames, 2) for k, v in stages.items()},
            "threads": threads}


# ------------------------------------------------------------------------------ driver
def run_once(scene: str, variant: str, max_frames: int | None, threads: int,
             overrides: dict[str, object] | None = None) -> dict:
    """One variant in a child process: its figures, process wall time and peak RSS."""
    cmd = [sys.executable, "-m", "benchmarks.speed", "--worker",
           "ours" if overrides else variant,
           "--config", str(SCENES[scene]), "--threads", str(threads)]
    if overrides:
        cmd += ["--overrides", json.dumps(overrides)]
    if max_frames is not None:
        cmd += ["--max-frames", str(max_frames)]
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        start = time.perf_counter()
        child = subprocess.Popen(cmd + ["--worker-out", result.name], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        process_s = time.perf_counter() - start
        if child.returncode != 0:
            raise RuntimeError(f"{scene}/{variant} failed:\n{stderr[-3000:]}")
        figures = json.loads(Path(result.name).read_text())
    return {**figures, "process_s": round(process_s, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}  # Linux: ru_maxrss in KiB


def summarise(runs: list[dict]) -> dict:
    """Medians over repeats of every figure (stage ms per key)."""
    stages = sorted({k for r in runs for k in r["stage_ms_per_camera_frame"]})
    return {
        "camera_frames": runs[0]["camera_frames"],
        "camera_frames_per_s": statistics.median(r["camera_frames_per_s"] for r in runs),
        "all_camera_frames_per_s": [r["camera_frames_per_s"] for r in runs],
        "stage_ms_per_camera_frame": {
            k: statistics.median(r["stage_ms_per_camera_frame"].get(k, 0.0) for r in runs)
            for k in stages},
        "process_s": statistics.median(r["process_s"] for r in runs),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "crops_embedded": (runs[0].get("reid") or {}).get("embedded_detections"),
    }


def markdown(report: dict) -> str:
    lines = ["| scene | variant | camera-frames | camera-frames/s (median) | runs | "
             "x ultralytics | x ultralytics-openvino | ms per camera-frame (median) | "
             "peak RSS MB | process s | crops embedded |", "|---" * 11 + "|"]
    for scene, variants in report["scenes"].items():
        for variant, s in variants.items():
            ratios = [report["ratios"].get(scene, {}).get(b, {}).get(variant)
                      for b in ("ultralytics", "ultralytics-openvino")]
            cells = " | ".join("" if r is None else f"{r:.2f}" for r in ratios)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in s["stage_ms_per_camera_frame"].items()
                               if v >= 0.05)
            runs = "/".join(f"{v:.1f}" for v in s["all_camera_frames_per_s"])
            lines.append(f"| {scene} | {variant} | {s['camera_frames']} | "
                         f"{s['camera_frames_per_s']:.1f} | {runs} | {cells} | {stages} | "
                         f"{s['peak_rss_mb']:.0f} | {s['process_s']:.0f} | "
                         f"{s.get('crops_embedded') or ''} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", nargs="*", default=list(SCENES), choices=list(SCENES))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-frames", type=int, default=None,
                        help="ticks per run (default: whole videos)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of ultralytics' runtime (ours: the config's)")
    parser.add_argument("--lever", action="append", default=[],
                        type=lambda text: parse_lever(text, reserved=VARIANTS),
                        metavar="NAME=KEY=VALUE[,KEY=VALUE]",
                        help="one more variant: the shipped config with these settings")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", type=json.loads, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker.startswith("ultralytics"):
            figures = worker_ultralytics(args.config, args.max_frames, args.threads,
                                         openvino=args.worker == "ultralytics-openvino")
        else:
            figures = worker_ours(args.config, args.max_frames, args.worker == "ours-motion",
                                  args.overrides)
        args.worker_out.write_text(json.dumps(figures))
        return 0

    levers = dict(args.lever)
    variants = list(args.variants) + list(levers)
    if "ultralytics-openvino" in variants:
        from benchmarks.peer_trackers import detector_settings, openvino_export

        for scene in args.scenes:
            settings = detector_settings(SCENES[scene])
            if settings["weights"].suffix != ".pt":
                print(f"{scene}: {settings['weights'].name} is no .pt file; ultralytics-openvino "
                      "skipped", file=sys.stderr)
                variants.remove("ultralytics-openvino")
                break
            openvino_export(settings)  # export once, before any timing
    raw: dict[str, dict[str, list[dict]]] = {}
    for repeat in range(args.repeats):
        for scene in args.scenes:
            for variant in variants:
                r = run_once(scene, variant, args.max_frames, args.threads, levers.get(variant))
                raw.setdefault(scene, {}).setdefault(variant, []).append(r)
                print(f"repeat {repeat + 1}/{args.repeats} {scene:7s} {variant:12s} "
                      f"{r['camera_frames_per_s']:7.2f} camera-frames/s, "
                      f"{r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    report = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                          "python": platform.python_version()},
              "repeats": args.repeats, "max_frames": args.max_frames, "threads": args.threads,
              "levers": levers,
              "scenes": {s: {v: summarise(runs) for v, runs in vs.items()}
                         for s, vs in raw.items()},
              "ratios": {}, "raw": raw}
    for scene, scene_runs in raw.items():
        for base_name in ("ultralytics", "ultralytics-openvino"):
            if base_name not in scene_runs:
                continue
            base = scene_runs[base_name]
            report["ratios"].setdefault(scene, {})[base_name] = {
                v: statistics.median(a["camera_frames_per_s"] / b["camera_frames_per_s"]
                                     for a, b in zip(runs, base, strict=True))
                for v, runs in scene_runs.items()}
    print(markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
