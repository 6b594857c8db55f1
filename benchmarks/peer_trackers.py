"""PETS09-S2L1, real detector: our pipeline vs ultralytics' trackers vs BoxMOT, one run.

Rows (all scored with ``pipeline.evaluation.mot`` against the MOTChallenge gt):

* ``ours <config>``: the whole pipeline (``benchmarks/pets09_pipeline.py``) for each
  ``--configs`` entry (default: ``configs/pets09_s2l1.yaml`` with re-id and
  ``configs/pets09_s2l1_motion_only.yaml``); frames/s = the runner's loop (decode, detect,
  embed, track, write) after the models are loaded;
* ``ultralytics <tracker>``: ``YOLO(weights).track(video, tracker="bytetrack.yaml" |
  "botsort.yaml")`` with the first config's detector file and settings (``conf``,
  ``imgsz``, ``iou``, ``max_det``, person class only), YAML defaults otherwise (BoT-SORT
  without re-id, as shipped); frames/s = the loop over the video after a warm-up call that
  loads the model. Ultralytics runs the file in its own runtime (LiteRT for ``.tflite``,
  PyTorch for ``.pt``), which may differ from the backend our config picks; for a ``.pt``
  file the rows are repeated on ultralytics' own OpenVINO export of it (``model.export(
  format="openvino")`` at the config's input size), what its users do for CPU speed;
* ``boxmot <tracker>`` (when ``--boxmot-python`` exists): BoxMOT's trackers fed our
  detector's boxes (the first config's ``YoloDetector``, computed once here), their re-id
  pointed at the local OSNet-x0.25 MSMT17 ONNX file. They run in a separate virtual
  environment (see docs/BENCHMARKS.md); frames/s = 1000 / (decode + detect ms per frame,
  measured here, + the tracker's own ms per frame, re-id included).

Prints a markdown table; ``--json`` writes every figure. Time figures need a quiet machine:

    flock /tmp/cpu.lock nice -n 5 python3 -m benchmarks.peer_trackers --json runs/peers.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
VIDEO = DATA / "video" / "pets09_s2l1" / "vtest.avi"
OSNET = DATA / "weights" / "osnet_x0_25_msmt17.onnx"
BOXMOT_PYTHON = Path("/tmp/boxmot-venv/bin/python")
BOXMOT_TRACKERS = ("bytetrack", "ocsort", "botsort", "strongsort", "deepocsort")
BOXMOT_REID = {"botsort", "strongsort", "deepocsort", "boosttrack", "hybridsort"}
KEYS = ("HOTA", "DetA", "AssA", "IDF1", "MOTA", "IDSW", "FP", "FN")
NUM_FRAMES = 795


def _frames(video: Path, max_frames: int | None):
    """BGR frames of ``video`` (1-based numbers), at most ``max_frames``."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    number = 0
    try:
        while max_frames is None or number < max_frames:
            ok, image = capture.read()
            if not ok:
                return
            number += 1
            yield number, image
    finally:
        capture.release()


# ------------------------------------------------------------------------------ ours
def run_ours(config: Path, out: Path, max_frames: int | None) -> dict:
    """One pipeline run, scored (reuses benchmarks/pets09_pipeline.py)."""
    from benchmarks.pets09_pipeline import evaluate_pets09

    result = evaluate_pets09(config, out, max_frames=max_frames, progress=False)
    return {**{k: result[k] for k in KEYS}, "frames_per_s": result["camera_frames_per_s"],
            "stage_ms_per_frame": result["stage_ms_per_camera_frame"]}


# ------------------------------------------------------------------------------ ultralytics
def detector_settings(config: Path) -> dict:
    """The detector file and the settings ``YOLO.track`` shares with our detector."""
    from pipeline.config import load_config

    params = dict(load_config(config).detector.params)
    imgsz = params.get("imgsz", 640)
    return {"weights": Path(params["weights"]), "conf": float(params.get("conf", 0.25)),
            "iou": float(params.get("iou", 0.7)), "max_det": int(params.get("max_det", 300)),
            "imgsz": list(imgsz) if isinstance(imgsz, (list, tuple)) else int(imgsz)}


def openvino_export(settings: dict) -> dict:
    """``settings`` with the ``.pt`` file replaced by ultralytics' own OpenVINO export of it.

    What an ultralytics user would do for CPU speed (``model.export(format="openvino")``);
    exported once, offline, into ``$MTMC_CACHE/ultralytics`` (default ``~/.cache/mtmc``),
    at the config's input size. OpenVINO picks bf16 on CPUs that have it, as our detector.
    """
    import shutil

    source = Path(settings["weights"])
    if source.suffix != ".pt":
        raise ValueError(f"{source}: an OpenVINO export needs a .pt checkpoint")
    imgsz = settings["imgsz"]
    size = list(imgsz) if isinstance(imgsz, list) else [imgsz, imgsz]
    cache = Path(os.environ.get("MTMC_CACHE", Path.home() / ".cache" / "mtmc"))
    folder = cache / "ultralytics" / f"{source.stem}_{size[0]}x{size[1]}"
    exported = folder / f"{source.stem}_openvino_model"
    if not (exported / f"{source.stem}.xml").is_file():
        from ultralytics import YOLO

        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, folder / source.name)  # ultralytics exports next to the file
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the table
            YOLO(str(folder / source.name)).export(format="openvino", imgsz=size)
    return {**settings, "weights": exported}


def set_ultralytics_threads(threads: int) -> None:
    """Give ultralytics' runtimes ``threads`` CPU threads, like our detector.

    Importing ultralytics sets torch to 1 thread, and its LiteRT backend uses
    ``min(8, cpu_count - 1)`` threads (1 on a 2-core machine).
    """
    import torch
    import ultralytics.nn.backends.litert as litert

    torch.set_num_threads(threads)
    litert.NUM_THREADS = threads


def run_ultralytics_track(settings: dict, tracker: str, max_frames: int | None,
                          threads: int, video: Path = VIDEO) -> tuple[np.ndarray, dict]:
    """``YOLO.track`` over ``video`` -> MOT rows and timing."""
    from ultralytics import YOLO

    set_ultralytics_threads(threads)
    model = YOLO(str(settings["weights"]), task="detect")
    kwargs = dict(tracker=f"{tracker}.yaml", conf=settings["conf"], iou=settings["iou"],
                  imgsz=settings["imgsz"], max_det=settings["max_det"], classes=[0],
                  device="cpu", verbose=False)
    first = next(_frames(video, 1))[1]
    model.track(first, persist=False, **kwargs)  # loads and warms up the model
    rows, speed = [], []
    start = time.perf_counter()
    frames = 0
    for number, result in enumerate(model.track(str(video), stream=True, persist=False,
                                                **kwargs), 1):
        if max_frames is not None and number > max_frames:
            break
        frames = number
        speed.append([result.speed[k] for k in ("preprocess", "inference", "postprocess")])
        boxes = result.boxes
        if boxes is None or boxes.id is None:
            continue
        xyxy = boxes.xyxy.cpu().numpy()
        ids = boxes.id.cpu().numpy()
        conf = boxes.conf.cpu().numpy()
        block = np.full((len(ids), 10), -1.0)
        block[:, 0], block[:, 1], block[:, 6] = number, ids, conf
        block[:, 2:4], block[:, 4:6] = xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]
        rows.append(block)
    seconds = time.perf_counter() - start
    # ultralytics' own per-image profile; tracking runs in a callback outside it, so it
    # falls in "other" with video decoding.
    mean = np.mean(np.array(speed), axis=0) if speed else np.zeros(3)
    total_ms = 1000 * seconds / max(frames, 1)
    timing = {"frames_per_s": round(frames / seconds, 2), "frames": frames,
              "loop_s": round(seconds, 3),
              "stage_ms_per_frame": {"preprocess": round(float(mean[0]), 2),
                                     "inference": round(float(mean[1]), 2),
                                     "postprocess": round(float(mean[2]), 2),
                                     "decode+track+other": round(total_ms - float(mean.sum()),
                                                                 2)}}
    return (np.concatenate(rows) if rows else np.zeros((0, 10))), timing


# ------------------------------------------------------------------------------ BoxMOT
def detect_once(config: Path, max_frames: int | None, out: Path) -> dict:
    """Our configured detector over the video; boxes saved for the BoxMOT worker."""
    from pipeline.config import load_config
    from pipeline.detection import DETECTORS

    cfg = load_config(config)
    detector = DETECTORS[cfg.detector.name](device="cpu", **dict(cfg.detector.params))
    import torch

    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    rows = []
    start = time.perf_counter()
    frames = 0
    for number, image in _frames(VIDEO, max_frames):
        dets = detector.detect([image])[0]
        rows.append(np.column_stack([np.full(len(dets), number), dets.xyxy, dets.score]))
        frames = number
    seconds = time.perf_counter() - start
    np.save(out, np.concatenate(rows) if rows else np.zeros((0, 6)))
    return {"frames": frames, "decode_detect_ms_per_frame": round(1000 * seconds / frames, 2)}


def boxmot_worker(dets_file: Path, out_dir: Path, trackers: list[str], max_frames: int | None,
                  reid: Path) -> None:
    """Runs inside the BoxMOT environment: each tracker over the video with fixed boxes."""
    import boxmot

    dets = np.load(dets_file)
    names = {"bytetrack": "ByteTrack", "ocsort": "OcSort", "botsort": "BotSort",
             "strongsort": "StrongSort", "deepocsort": "DeepOcSort", "boosttrack": "BoostTrack",
             "hybridsort": "HybridSort"}
    report = {"boxmot_version": boxmot.__version__}
    for name in trackers:
        cls = getattr(boxmot, names[name])
        kwargs = ({"reid_weights": reid, "device": "cpu", "half": False}
                  if name in BOXMOT_REID else {})
        tracker = cls(**kwargs)
        rows, seconds, frames = [], 0.0, 0
        for number, image in _frames(VIDEO, max_frames):
            d = dets[dets[:, 0] == number]
            det_in = np.column_stack([d[:, 1:6], np.zeros(len(d))]).astype(np.float32)
            start = time.perf_counter()
            out = tracker.update(det_in, image)
            seconds += time.perf_counter() - start
            frames = number
            if len(out):
                block = np.full((len(out), 10), -1.0)
                block[:, 0], block[:, 1], block[:, 6] = number, out[:, 4], out[:, 5]
                block[:, 2:4], block[:, 4:6] = out[:, :2], out[:, 2:4] - out[:, :2]
                rows.append(block)
        np.save(out_dir / f"{name}.npy", np.concatenate(rows) if rows else np.zeros((0, 10)))
        report[name] = {"track_ms_per_frame": round(1000 * seconds / max(frames, 1), 2),
                        "reid": str(reid) if name in BOXMOT_REID else None}
    (out_dir / "report.json").write_text(json.dumps(report))


def run_boxmot(python: Path, config: Path, trackers: list[str], max_frames: int | None,
               tmp: Path) -> tuple[dict, dict]:
    """Detections here, trackers in BoxMOT's environment; rows per tracker + timing."""
    det_timing = detect_once(config, max_frames, tmp / "dets.npy")
    cmd = [str(python), str(Path(__file__).resolve()), "--boxmot-worker",
           "--dets", str(tmp / "dets.npy"), "--worker-out", str(tmp),
           "--boxmot-trackers", *trackers]
    if max_frames is not None:
        cmd += ["--max-frames", str(max_frames)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"BoxMOT worker failed ({python}):\n{done.stderr[-3000:]}")
    report = json.loads((tmp / "report.json").read_text())
    rows = {name: np.load(tmp / f"{name}.npy") for name in trackers}
    return rows, {"detector": det_timing, **report}


# ------------------------------------------------------------------------------ main
def score(rows: np.ndarray, max_frames: int | None) -> dict:
    from pipeline.evaluation.mot import evaluate_mot, read_mot_txt

    gt = read_mot_txt(REPO / "samples" / "pets09_s2l1" / "gt" / "gt.txt")
    if max_frames is not None:
        gt = gt[gt[:, 0] <= max_frames]
    metrics = evaluate_mot(gt, rows, num_frames=max_frames or NUM_FRAMES)
    return {k: round(float(metrics[k]), 4) for k in KEYS}


def markdown(results: list[dict]) -> str:
    lines = ["| tracker | detections | HOTA | DetA | AssA | IDF1 | MOTA | IDSW | FP | FN | "
             "frames/s |", "|---" * 11 + "|"]
    for r in results:
        pct = " | ".join(f"{100 * r[k]:.1f}" for k in ("HOTA", "DetA", "AssA", "IDF1", "MOTA"))
        lines.append(f"| {r['name']} | {r['detections']} | {pct} | {r['IDSW']:.0f} | "
                     f"{r['FP']:.0f} | {r['FN']:.0f} | {r['frames_per_s']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=Path, nargs="+", default=[
        REPO / "configs" / "pets09_s2l1.yaml", REPO / "configs" / "pets09_s2l1_motion_only.yaml"])
    parser.add_argument("--ultralytics", nargs="*", default=["bytetrack", "botsort"])
    parser.add_argument("--no-openvino-export", action="store_true",
                        help="skip the ultralytics rows on its OpenVINO export of the .pt file")
    parser.add_argument("--boxmot-python", type=Path, default=BOXMOT_PYTHON,
                        help="python of the BoxMOT environment (rows skipped if missing)")
    parser.add_argument("--boxmot-trackers", nargs="*", default=list(BOXMOT_TRACKERS))
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for ultralytics' runtime (its LiteRT default would be "
                        "cpu_count - 1; our runner uses the config's, default cpu_count)")
    parser.add_argument("--json", type=Path)
    # internal: the BoxMOT side, run by the BoxMOT environment's python
    parser.add_argument("--boxmot-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dets", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.boxmot_worker:
        boxmot_worker(args.dets, args.worker_out, args.boxmot_trackers, args.max_frames, OSNET)
        return 0

    results, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for config in args.configs:
            r = run_ours(config, tmp / config.stem, args.max_frames)
            results.append({"name": f"ours {config.stem}", "detections": "ours", **r})
        settings = detector_settings(args.configs[0])
        runtimes = [("", settings)]
        if not args.no_openvino_export and settings["weights"].suffix == ".pt":
            runtimes.append((" (OpenVINO export)", openvino_export(settings)))
        for suffix, these in runtimes:
            for tracker in args.ultralytics:
                rows, timing = run_ultralytics_track(these, tracker, args.max_frames,
                                                     args.threads)
                results.append({"name": f"ultralytics {tracker}{suffix}",
                                "detections": "ultralytics", **score(rows, args.max_frames),
                                **timing})
        if args.boxmot_trackers and args.boxmot_python.exists():
            rows, report = run_boxmot(args.boxmot_python, args.configs[0],
                                      args.boxmot_trackers, args.max_frames, tmp)
            det_ms = report["detector"]["decode_detect_ms_per_frame"]
            for name in args.boxmot_trackers:
                track_ms = report[name]["track_ms_per_frame"]
                results.append({"name": f"boxmot {name}" + (" (OSNet re-id)" if name in
                                                            BOXMOT_REID else ""),
                                "detections": "ours", **score(rows[name], args.max_frames),
                                "frames_per_s": round(1000 / (det_ms + track_ms), 2),
                                "track_ms_per_frame": track_ms,
                                "decode_detect_ms_per_frame": det_ms})
            notes.append(f"boxmot {report['boxmot_version']}")
        elif args.boxmot_trackers:
            notes.append(f"BoxMOT rows skipped: {args.boxmot_python} not found")
    print(markdown(results))
    print(f"\ndetector: {settings['weights'].name} conf={settings['conf']} "
          f"imgsz={settings['imgsz']} iou={settings['iou']}; frames: "
          f"{args.max_frames or NUM_FRAMES}" + ("; " + "; ".join(notes) if notes else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"detector": {**settings,
                                                      "weights": str(settings["weights"])},
                                         "max_frames": args.max_frames, "notes": notes,
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
