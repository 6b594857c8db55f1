"""Quantise the shipped detector or re-id network to an INT8 OpenVINO IR with NNCF.

Post-training quantisation (NNCF's ``quantize``: min-max statistics of activations on a
calibration set, symmetric INT8 weights, fast bias correction, the "mixed" preset), on
the CPU, offline. The IR is written beside the float weights with the name a run looks
for (``pipeline.int8``) and a JSON sidecar recording the float file's SHA-256, the
calibration data and the versions, so a later change of the float file is caught.

Calibration uses exactly the run's pre-processing:

* detector: frames of the shipped sample videos (every ``--every``-th frame of each
  camera), letterboxed to ``--imgsz`` like ``YoloDetector``;
* re-id: person crops of a training source (default: CUHK03's detected, misaligned boxes
  — never the CUHK01 test identities), resized and normalised like ``CropEmbedder``.

Usage (needs ``pip install nncf``, the ``int8`` extra; a minute or two on 2 cores):

    python3 tools/quantize_openvino.py detector --weights weights/yolov8n_recovered.pt \\
        --imgsz 384x640
    python3 tools/quantize_openvino.py reid --weights weights/hacnn_cuhk.safetensors \\
        --crops ../shared/data/reid/cuhk03_detected_train
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def _sample_frames(folder: Path, every: int) -> list[np.ndarray]:
    import cv2

    frames = []
    videos = sorted(p for p in folder.iterdir() if p.suffix in (".webm", ".mp4", ".avi"))
    if not videos:
        raise SystemExit(f"error: no videos in {folder}; pass --frames a folder of videos")
    for video in videos:
        capture = cv2.VideoCapture(str(video))
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                frames.append(frame)
            index += 1
        capture.release()
    return frames


def _save(model, ir: Path, sidecar: dict) -> None:
    import openvino as ov

    ov.save_model(model, str(ir))  # weights compressed to their INT8 storage
    ir.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    size = ir.with_suffix(".bin").stat().st_size / 2**20
    print(f"wrote {ir} (+ .bin {size:.1f} MiB, .json)")


def _common(source: Path, calibration: str, count: int) -> dict:
    import nncf
    import openvino as ov

    from pipeline.int8 import sha256

    return {"source": source.name, "source_sha256": sha256(source),
            "calibration": calibration, "calibration_count": count,
            "method": "nncf.quantize, preset mixed, fast bias correction",
            "nncf": nncf.__version__, "openvino": ov.__version__,
            "made": datetime.date.today().isoformat(),
            "tool": "tools/quantize_openvino.py"}


def quantize_detector(args: argparse.Namespace) -> None:
    import nncf
    import openvino as ov

    from pipeline.detection.backends import _onnx_file
    from pipeline.detection.yolo import letterbox
    from pipeline.int8 import detector_ir

    height, width = (int(v) for v in args.imgsz.lower().split("x"))
    onnx_path, names = _onnx_file(args.weights, (height, width), None)
    frames = _sample_frames(args.frames, args.every)
    print(f"{len(frames)} calibration frames from {args.frames}")

    def prepare(frame: np.ndarray) -> np.ndarray:
        image = letterbox(frame, (height, width)).astype(np.float32) / np.float32(255.0)
        return image.transpose(2, 0, 1)[None]

    model = ov.Core().read_model(str(onnx_path))
    quantized = nncf.quantize(model, nncf.Dataset(frames, prepare), subset_size=len(frames),
                              preset=nncf.QuantizationPreset.MIXED,
                              ignored_scope=_detect_head_decoding(model))
    where = args.frames.resolve()
    where = where.relative_to(REPO) if where.is_relative_to(REPO) else where
    info = _common(args.weights, f"{where}: every {args.every}th frame", len(frames))
    _save(quantized, detector_ir(args.weights, (height, width)),
          {**info, "imgsz": [height, width], "names": {str(k): v for k, v in names.items()}})


def _detect_head_decoding(model):
    """The detection head's box decoding (DFL softmax, anchors, scaling) stays float.

    Quantised, the DFL's softmax over 16 bins and the anchor arithmetic move boxes by
    pixels (PETS09 precision fell from 0.90 to 0.62 at the same recall in a first try);
    the head's convolutions (``cv2``/``cv3``) are still INT8.
    """
    import re

    import nncf

    heads = {op.get_friendly_name().split("/dfl/")[0] for op in model.get_ordered_ops()
             if "/dfl/" in op.get_friendly_name()}
    if len(heads) != 1:
        raise SystemExit(f"error: expected one YOLO detection head with a DFL, found {heads}")
    head = re.escape(heads.pop())
    return nncf.IgnoredScope(patterns=[rf"{head}/(?!cv2\.|cv3\.).*"], types=["Sigmoid"],
                             validate=False)


def quantize_reid(args: argparse.Namespace) -> None:
    import cv2
    import nncf
    import openvino as ov

    from pipeline.int8 import reid_ir
    from pipeline.reid.embedder import preprocess_crops
    from pipeline.reid.runtimes import export_onnx
    from pipeline.reid.weights import load_reid_model

    net, _ = load_reid_model(args.weights)
    files = sorted(args.crops.glob("*.jpg"))
    if not files:
        raise SystemExit(f"error: no .jpg crops in {args.crops}")
    step = max(1, len(files) // args.count)
    files = files[::step][: args.count]
    crops = [cv2.imread(str(f)) for f in files]
    print(f"{len(crops)} calibration crops from {args.crops}")
    with tempfile.TemporaryDirectory(prefix="mtmc_q_") as tmp:
        model = ov.convert_model(str(export_onnx(net, Path(tmp) / "reid.onnx")))
    hw = tuple(net.input_hw)
    quantized = nncf.quantize(model, nncf.Dataset(crops, lambda c: preprocess_crops([c], hw)),
                              subset_size=len(crops), preset=nncf.QuantizationPreset.MIXED)
    _save(quantized, reid_ir(args.weights),
          _common(args.weights, f"{args.crops.name}: every {step}th crop", len(crops)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    det = sub.add_parser("detector", help="YOLO .pt -> INT8 IR at one input size")
    det.add_argument("--weights", type=Path, default=REPO / "weights/yolov8n_recovered.pt")
    det.add_argument("--imgsz", default="384x640", help="HxW, multiples of 32")
    det.add_argument("--frames", type=Path, default=REPO / "samples/pdestre_session3",
                     help="folder of calibration videos")
    det.add_argument("--every", type=int, default=5, help="keep every N-th frame")
    reid = sub.add_parser("reid", help="re-id .safetensors -> INT8 IR")
    reid.add_argument("--weights", type=Path, default=REPO / "weights/hacnn_cuhk.safetensors")
    reid.add_argument("--crops", type=Path,
                      default=REPO.parent / "shared/data/reid/cuhk03_detected_train",
                      help="folder of calibration crops (never the test identities)")
    reid.add_argument("--count", type=int, default=300, help="calibration crops")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.what == "detector":
        quantize_detector(args)
    else:
        quantize_reid(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
