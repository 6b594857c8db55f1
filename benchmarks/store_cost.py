"""What writing the run store (run.sqlite, best crops) costs end to end, side by side.

Variants on the shipped sample (``configs/sample.yaml``, 4 cameras): ``store-on`` (as
shipped, ``output.store: true``) and ``store-off`` (``output.store: false``: no store,
no crops cut). Every run is its own process; the two take turns within a repeat (the
order alternating between repeats) so both share the same background load; the ratio
on/off is taken per repeat, then the median.

Figures per run: ``camera_frames_per_s`` as the summary reports it (camera-frames over
the frame loop, ``loop_s``), and ``end_to_end_per_s``: camera-frames over the loop plus
the ``export`` stage (closing every output, which is where the store gives rows their
final ids and encodes the remaining crops). With ``--instrument`` the store-on runs also
time the store's own work directly (every ``StoreSink`` hook and ``BestCrops.update``,
by wrapping them with ``perf_counter``), a figure that background load on a shared
machine disturbs far less than a throughput ratio.

    flock /tmp/cpu.lock nice -n 5 python3 -m benchmarks.store_cost --repeats 3 \\
        --json runs/store_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "configs" / "sample.yaml"
VARIANTS = ("store-on", "store-off")


def _instrument() -> dict[str, float]:
    """Wrap the store's hooks and the crop picker to add up their time (seconds)."""
    import functools
    import time

    from pipeline.export.crops import BestCrops
    from pipeline.export.store import StoreSink

    spent = {"store_s": 0.0, "crops_s": 0.0}

    def timed(cls: type, name: str, key: str) -> None:
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - start
        setattr(cls, name, wrapper)
    for name in ("__init__", "on_rows", "on_revisions", "on_tracklets", "on_identities",
                 "flush", "close", "abort"):
        timed(StoreSink, name, "store_s")
    timed(BestCrops, "update", "crops_s")
    return spent


def worker(variant: str, max_frames: int | None, instrument: bool = False) -> dict:
    """One run in this process; its throughput figures."""
    from pipeline.config import load_config
    from pipeline.runner import RunOptions, run

    spent = _instrument() if instrument and variant == "store-on" else None

    config = load_config(SAMPLE)
    config = replace(config, output=replace(config.output, store=variant == "store-on"))
    with tempfile.TemporaryDirectory() as out:
        summary = run(config, Path(out), RunOptions(max_frames=max_frames, progress=False,
                                                    handle_signals=False))
        store = Path(out) / "run.sqlite"
        store_bytes = store.stat().st_size if store.exists() else 0
    export_s = summary["stage_ms"].get("export", 0.0) / 1000
    frames = summary["camera_frames"]
    return {"variant": variant, "camera_frames": frames, "loop_s": summary["loop_s"],
            "export_s": round(export_s, 3),
            "camera_frames_per_s": summary["camera_frames_per_s"],
            "end_to_end_per_s": round(frames / (summary["loop_s"] + export_s), 3),
            "write_ms_per_camera_frame": summary["stage_ms_per_camera_frame"].get("write"),
            "rows": summary["rows"], "store_bytes": store_bytes,
            **({} if spent is None else {
                **{k: round(v, 4) for k, v in spent.items()},
                "store_and_crops_share_of_loop_percent": round(
                    100 * (spent["store_s"] + spent["crops_s"]) / summary["loop_s"], 3)})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-frames", type=int, default=None,
                        help="ticks per run (default: the whole sample)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--instrument", action="store_true",
                        help="also time the store's own work in the store-on runs")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.max_frames, args.instrument)),
              flush=True)
        return 0
    runs: list[dict] = []
    for repeat in range(args.repeats):
        order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            command = [sys.executable, "-m", "benchmarks.store_cost", "--worker", variant]
            if args.max_frames is not None:
                command += ["--max-frames", str(args.max_frames)]
            if args.instrument:
                command.append("--instrument")
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
            result = json.loads(next(line for line in done.stdout.splitlines()
                                     if line.startswith("RESULT "))[7:])
            result["repeat"] = repeat
            runs.append(result)
            print(json.dumps(result), flush=True)
    report: dict = {"config": str(SAMPLE.relative_to(REPO)), "max_frames": args.max_frames,
                    "repeats": args.repeats, "runs": runs}
    for key in ("camera_frames_per_s", "end_to_end_per_s"):
        by = {v: [r[key] for r in runs if r["variant"] == v] for v in VARIANTS}
        ratios = [on / off for on, off in zip(by["store-on"], by["store-off"], strict=True)]
        report[key] = {"median_on": statistics.median(by["store-on"]),
                       "median_off": statistics.median(by["store-off"]),
                       "ratios_on_off": [round(r, 4) for r in ratios],
                       "median_ratio_on_off": round(statistics.median(ratios), 4),
                       "change_percent": round(100 * (statistics.median(ratios) - 1), 2)}
        print(f"{key}: store on {report[key]['median_on']:.3f}, off "
              f"{report[key]['median_off']:.3f} (medians); on/off per repeat "
              f"{report[key]['ratios_on_off']}, median {report[key]['median_ratio_on_off']} "
              f"({report[key]['change_percent']:+.2f}%)")
    shares = [r["store_and_crops_share_of_loop_percent"] for r in runs
              if "store_and_crops_share_of_loop_percent" in r]
    if shares:
        report["store_and_crops_share_of_loop_percent"] = {
            "runs": shares, "median": statistics.median(shares)}
        print(f"store + crops own time: median {statistics.median(shares):.3f}% of the loop "
              f"(runs {shares})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
