"""The ``mtmc`` command line.

``mtmc run CONFIG --out DIR``      the pipeline on recorded footage or live cameras
``mtmc reid train|eval|export``    re-id model tools
``mtmc eval mot|mtmc``             tracking metrics
``mtmc query RUN_DIR``             who was where (an identity, a camera, a floor area),
                                   from a run's store (run.sqlite)
``mtmc review RUN_DIR``            the review page (merge/split identities), --export

Library code raises; this module turns errors into one clear line on stderr
and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

# ultralytics must never reach the network; set before anything imports it.
os.environ.setdefault("YOLO_OFFLINE", "1")
# numpy's BLAS threads spin against torch's on a small CPU; the tracker's small matrix
# products are fastest single-threaded (measured: 10 ms vs 0.05 ms for 50x512 @ 512x50
# on a busy 2-core machine). Must be set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["main"]

logger = logging.getLogger("mtmc")

# (group, command) -> module with add_arguments(parser) and main(args) -> int.
_TOOLS = {
    ("reid", "train"): ("pipeline.reid.train", "train a re-id model"),
    ("reid", "eval"): ("pipeline.reid.evaluate", "evaluate re-id weights on a protocol"),
    ("reid", "export"): ("pipeline.reid.export", "export re-id weights to ONNX/OpenVINO"),
    ("reid", "interpolate"): ("pipeline.reid.interpolate",
                              "interpolate fine-tuned re-id weights with their start"),
    ("reid", "adapt-bn"): ("pipeline.reid.adapt",
                           "re-estimate a model's batch-norm statistics on target crops"),
    ("reid", "crops"): ("pipeline.footage_crops",
                        "cut unlabelled person crops from footage with the detector"),
    ("eval", "mot"): ("pipeline.evaluation.mot", "MOT metrics (HOTA, IDF1, MOTA) of MOT files"),
    ("eval", "mtmc"): ("pipeline.evaluation.mtmc", "multi-camera identity metrics of a CSV"),
}


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the pipeline on the cameras of a config file")
    p.add_argument("config", type=Path, help="YAML run config, e.g. configs/sample.yaml")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N ticks")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop after this many wall-clock seconds (live cameras run until "
                        "this, Ctrl-C or SIGTERM)")
    p.add_argument("--health-interval", type=float, default=30.0, metavar="SECONDS",
                   help="seconds between health log lines of live cameras (default 30)")
    p.add_argument("--save-video", action="store_true", default=None,
                   help="write an annotated video per camera")
    p.add_argument("--device", default=None, help="cpu or cuda (overrides the config)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run each camera's work in Ray actors (needs `pip install "
                        "'mtmc-pipeline[ray]'`): 'local' starts Ray on this machine (the "
                        "default, or the config's executor.address), 'auto' or HOST:PORT "
                        "joins a cluster started with `ray start` (docs/SCALE.md)")
    p.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.runner import RunOptions, run

    if args.duration is not None and not args.duration > 0:
        raise ValueError(f"--duration must be > 0 seconds, got {args.duration}")
    if not args.health_interval > 0:
        raise ValueError(f"--health-interval must be > 0 seconds, got {args.health_interval}")
    config = load_config(args.config)
    summary = run(config, args.out, RunOptions(
        max_frames=args.max_frames, save_video=args.save_video, device=args.device,
        threads=args.threads, progress=not args.no_progress, duration_s=args.duration,
        health_interval_s=args.health_interval, ray_address=args.ray))
    _print_summary(summary, args.out)
    # SIGTERM is the normal way to stop a service: a clean stop, exit 0.
    return 130 if summary["interrupted"] and summary.get("stopped_by") != "SIGTERM" else 0


def _print_summary(summary: dict, out: Path) -> None:
    live = summary.get("live", False)
    head = f"{'camera':<12}{'frames':>8}"
    if live:
        head += f"{'dropped':>9}{'reconnects':>12}{'open_failures':>15}{'outage_s':>10}"
    lines = [head, "-" * len(head)]
    for c in summary["cameras"]:
        line = f"{c['id']:<12}{c['frames']:>8}"
        if live and "health" in c:
            h = c["health"]
            line += (f"{h['dropped']:>9}{h['reconnects']:>12}{h['open_failures']:>15}"
                     f"{h['outage_s']:>10.1f}")
        lines.append(line)
    lines.append("-" * len(head))
    why = {"container": "its file's frame count", "other cameras": "the other cameras' length"}
    lines += [f"{c['id']} ended early: {c['frames']} of {c['frames_expected']} frames "
              f"(expected from {why.get(c['expected_from'], c['expected_from'])}; see the "
              "warning above)" for c in summary["cameras"] if c.get("ended_early")]
    lines += [
        f"tracklets {summary['tracklets']}, identities {summary['identities']} "
        f"({summary['identities_multi_camera']} seen by 2+ cameras), rows {summary['rows']}",
        f"{summary['camera_frames_per_s']} camera-frames/s; ms per camera-frame: "
        + ", ".join(f"{k} {v}" for k, v in summary["stage_ms_per_camera_frame"].items()),
        f"outputs in {out}/ (trajectories.csv, summary.json"
        + (", revisions.csv, trajectories_final.csv)" if summary.get("association") == "online"
           else ")"),
    ]
    print("\n".join(lines))


def _add_query(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="where an identity was, who a camera saw, or who stood in a "
                       "floor area (run.sqlite)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="output folder of mtmc run")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--id", type=int, dest="global_id", help="global identity to look up")
    what.add_argument("--camera", help="camera whose people to list")
    what.add_argument("--area", type=_area, metavar="X0,Y0,X1,Y1",
                      help="floor rectangle in metres (calibrated cameras): who stood in it")
    p.add_argument("--from", type=float, dest="from_s", metavar="SECONDS",
                   help="with --camera/--area: from this time (seconds on the run's clock)")
    p.add_argument("--to", type=float, dest="to_s", metavar="SECONDS",
                   help="with --camera/--area: up to this time (inclusive)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_query)


def _area(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 in metres, got {text!r}")
    return values  # type: ignore[return-value]


def _window(args: argparse.Namespace) -> str:
    return (f"{'start' if args.from_s is None else f'{args.from_s:g} s'} to "
            f"{'end' if args.to_s is None else f'{args.to_s:g} s'}")


def _print_area(result: dict, args: argparse.Namespace) -> None:
    x0, y0, x1, y1 = result["area"]
    people = result["identities"]
    lines = [f"floor area x {x0:g}..{x1:g} m, y {y0:g}..{y1:g} m, {_window(args)}: "
             f"{len(people)} identit{'y' if len(people) == 1 else 'ies'}"]
    if not result["calibrated_rows"]:
        lines.append("  (no row of this time window has a floor position: no camera is "
                     "calibrated, see README 'Floor positions')")
    lines += [f"  id {p['global_id']:>4}: {p['first_s']:.2f}-{p['last_s']:.2f} s, "
              f"{p['rows']} rows, camera(s) {', '.join(p['cameras'])}" for p in people]
    print("\n".join(lines))


def _cmd_query(args: argparse.Namespace) -> int:
    import json

    from pipeline.export.store_read import open_run

    if args.global_id is not None and (args.from_s is not None or args.to_s is not None):
        raise ValueError("--from/--to go with --camera or --area, not with --id")
    with open_run(args.run_dir) as store:
        if args.global_id is not None:
            result = store.identity(args.global_id)
        elif args.area is not None:
            result = store.in_area(*args.area, from_s=args.from_s, to_s=args.to_s)
        else:
            result = store.at_camera(args.camera, args.from_s, args.to_s)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.global_id is not None:
        first, last = result["first_seen"], result["last_seen"]
        lines = [f"identity {result['global_id']}: {len(result['cameras'])} camera(s), first "
                 f"seen {first['time_s']:.2f} s on {first['camera']}, last seen "
                 f"{last['time_s']:.2f} s on {last['camera']}"]
        for camera in result["cameras"]:
            spans = ", ".join(f"{s['from_s']:.2f}-{s['to_s']:.2f} s (track {s['track_id']})"
                              for s in camera["spans"])
            lines.append(f"  {camera['camera']}: {spans}")
        print("\n".join(lines))
    elif args.area is not None:
        _print_area(result, args)
    else:
        people = result["identities"]
        lines = [f"{result['camera']}, {_window(args)}: {len(people)} identit"
                 f"{'y' if len(people) == 1 else 'ies'}"]
        lines += [f"  id {p['global_id']:>4}: {p['first_s']:.2f}-{p['last_s']:.2f} s, "
                  f"{p['rows']} rows, track(s) {', '.join(map(str, p['track_ids']))}"
                  for p in people]
        print("\n".join(lines))
    return 0


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="the tracks of a run most like a person's crop")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="output folder of mtmc run")
    p.add_argument("--image", type=Path, required=True, help="crop of one person (jpg/png)")
    p.add_argument("--top", type=int, default=10, help="how many tracks (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_search)


def _cmd_search(args: argparse.Namespace) -> int:
    import json

    from pipeline.search import search

    matches = search(args.run_dir, args.image, top=args.top)
    if args.json:
        print(json.dumps([m.as_dict() for m in matches], indent=2))
    elif not matches:
        print(f"{args.run_dir}: no track carries an appearance vector")
    else:
        print("\n".join(f"{m.similarity:6.3f}  id {m.global_id:>4}  {m.camera} track "
                        f"{m.track_id}  {m.first_s:.2f}-{m.last_s:.2f} s, {m.rows} rows"
                        for m in matches))
    return 0


def _add_review(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="review page of a run: merge/split identities, export")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="output folder of mtmc run")
    p.add_argument("--port", type=int, default=8765, help="local port (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default local)")
    p.add_argument("--export", action="store_true",
                   help="write trajectories_reviewed.csv with the corrections applied, and exit")
    p.set_defaults(handler=_cmd_review)


def _cmd_review(args: argparse.Namespace) -> int:
    if args.export:
        from pipeline.export.store_read import open_run

        with open_run(args.run_dir) as store:
            active = sum(not c["undone"] for c in store.corrections())
            path, rows = store.export_reviewed()
        print(f"wrote {path}: {rows} rows, {active} correction(s) applied")
        return 0
    import signal

    from pipeline.review import make_server

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    server = make_server(args.run_dir, host=args.host, port=args.port)
    previous = signal.signal(signal.SIGTERM, stop)  # a service manager's stop: clean exit 0
    print(f"review page of {args.run_dir}: {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return 0


def _add_tools(sub: argparse._SubParsersAction) -> None:
    groups: dict[str, argparse._SubParsersAction] = {}
    helps = {"reid": "re-identification models: train, eval, export, interpolate, adapt-bn, crops",
             "eval": "evaluate tracking output against ground truth"}
    for (group, name), (module, help_text) in _TOOLS.items():
        if group not in groups:
            gp = sub.add_parser(group, help=helps[group])
            groups[group] = gp.add_subparsers(dest=f"{group}_command", required=True)
        p = groups[group].add_parser(name, help=help_text)
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:  # a tool whose module is absent should not break `run`
            p.set_defaults(handler=lambda _a, e=exc: _unavailable(e))
            continue
        mod.add_arguments(p)
        p.set_defaults(handler=mod.main)


def _unavailable(exc: Exception) -> int:
    raise RuntimeError(f"this command is unavailable: {exc}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtmc", description="Multi-camera person tracking: footage in, trajectories out.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_query(sub)
    _add_search(sub)
    _add_review(sub)
    _add_tools(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # ultralytics logs every model load at INFO on stdout; keep its warnings only.
    logging.getLogger("ultralytics").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("mtmc: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        if args.verbose:
            raise
        print(f"mtmc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
