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

Detector candidates (docs/PERFORMANCE.md, "INT8 detector calibration"; compare them with
``python3 -m benchmarks.int8_detector FOLDER...``): ``--out FOLDER`` writes the IR elsewhere
(put a copy of the ``.pt`` beside it), ``--keep-float REGEX...`` keeps more layers float,
``--extra-frames``/``--every``/``--subset-size`` change the calibration set,
``--preset``/``--full-bias-correction`` NNCF's options, and ``--accuracy-control MAX_DROP``
runs ``nncf.quantize_with_accuracy_control`` against the float model's boxes on frames of
``--validation-frames`` that calibration did not use (never PETS09, the test sequence).
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


def _sample_frames(folder: Path, every: int, offset: int = 0) -> list[np.ndarray]:
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
            if index % every == offset:
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


def _common(source: Path, calibration: str, count: int,
            method: str = "nncf.quantize, preset mixed, fast bias correction") -> dict:
    import nncf
    import openvino as ov

    from pipeline.int8 import sha256

    return {"source": source.name, "source_sha256": sha256(source),
            "calibration": calibration, "calibration_count": count,
            "method": method,
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
    frames, sources = [], []
    for folder in [args.frames, *args.extra_frames]:
        part = _sample_frames(folder, args.every)
        folder = folder.resolve()
        frames += part
        sources.append(str(folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder))
    print(f"{len(frames)} calibration frames from {', '.join(sources)}")

    def prepare(frame: np.ndarray) -> np.ndarray:
        image = letterbox(frame, (height, width)).astype(np.float32) / np.float32(255.0)
        return image.transpose(2, 0, 1)[None]

    model = ov.Core().read_model(str(onnx_path))
    scope = _detect_head_decoding(model, args.keep_float)
    preset = {"mixed": nncf.QuantizationPreset.MIXED,
              "performance": nncf.QuantizationPreset.PERFORMANCE}[args.preset]
    common = {"subset_size": args.subset_size or len(frames), "preset": preset,
              "fast_bias_correction": not args.full_bias_correction, "ignored_scope": scope}
    if args.accuracy_control is None:
        quantized = nncf.quantize(model, nncf.Dataset(frames, prepare), **common)
    else:
        quantized = _with_accuracy_control(model, nncf.Dataset(frames, prepare), args, prepare,
                                           common)
    method = (f"nncf.quantize, preset {args.preset}, "
              f"{'full' if args.full_bias_correction else 'fast'} bias correction, "
              f"float: head decoding{''.join(f', {p}' for p in args.keep_float)}"
              + ("" if args.accuracy_control is None else
                 f"; nncf.quantize_with_accuracy_control, max drop {args.accuracy_control} "
                 f"of F1 (IoU 0.5, score >= 0.4) against the float boxes on "
                 f"{args.validation_frames} (every {args.every}th frame from 2)"))
    info = _common(args.weights, f"{'; '.join(sources)}: every {args.every}th frame",
                   len(frames), method)
    ir = detector_ir(args.weights, (height, width))
    if args.out is not None:  # a candidate elsewhere (evaluate it with a copy of the .pt)
        args.out.mkdir(parents=True, exist_ok=True)
        ir = args.out / ir.name
    _save(quantized, ir,
          {**info, "imgsz": [height, width], "names": {str(k): v for k, v in names.items()}})


def _person_boxes(pred: np.ndarray, min_score: float = 0.4) -> np.ndarray:
    """(4 + classes, anchors) raw YOLO output -> NMS-ed person boxes (xyxy, input pixels)."""
    import cv2

    scores = pred[4:]
    keep = (scores.argmax(0) == 0) & (scores[0] >= min_score)
    cx, cy, w, h = pred[:4, keep]
    xywh = np.stack([cx - w / 2, cy - h / 2, w, h], 1)
    order = cv2.dnn.NMSBoxes(xywh.tolist(), scores[0, keep].tolist(), min_score, 0.7)
    xywh = xywh[np.asarray(order, int).reshape(-1)]
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


def _with_accuracy_control(model, calibration, args, prepare, common):
    """NNCF's accuracy control: layers back to float until the validation F1 (the INT8
    model's boxes against the float model's, IoU 0.5, score >= 0.4) drops by at most
    ``--accuracy-control``. The validation frames are not the calibration frames."""
    import nncf
    import openvino as ov

    from pipeline.geometry import iou_matrix, linear_assignment

    frames = _sample_frames(args.validation_frames, args.every, offset=2)
    float_model = ov.Core().compile_model(model, "CPU")
    references = [_person_boxes(float_model(prepare(f))[0][0]) for f in frames]
    print(f"{len(frames)} validation frames from {args.validation_frames}")

    def f1(compiled, data) -> float:
        hit = n_det = n_ref = 0
        for frame, reference in data:  # the raw items; NNCF's ranking feeds prepare(frame)
            boxes = _person_boxes(compiled(prepare(frame))[0][0])
            matches, _, _ = linear_assignment(1.0 - iou_matrix(boxes, reference), max_cost=0.5)
            hit, n_det, n_ref = hit + len(matches), n_det + len(boxes), n_ref + len(reference)
        return 2 * hit / max(n_det + n_ref, 1)

    validation = nncf.Dataset(list(zip(frames, references, strict=True)),
                              lambda item: prepare(item[0]))
    restorer = nncf.AdvancedAccuracyRestorerParameters(max_num_iterations=args.max_reverts)
    return nncf.quantize_with_accuracy_control(
        model, calibration, validation, lambda compiled, data: f1(compiled, data),
        max_drop=args.accuracy_control, advanced_accuracy_restorer_parameters=restorer,
        **common)


def _detect_head_decoding(model, keep_float: list[str] = ()):
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
    return nncf.IgnoredScope(patterns=[rf"{head}/(?!cv2\.|cv3\.).*", *keep_float],
                             types=["Sigmoid"],
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
    det.add_argument("--extra-frames", type=Path, nargs="*", default=[],
                     help="more folders of calibration videos (never the PETS09 test video)")
    det.add_argument("--every", type=int, default=5, help="keep every N-th frame")
    det.add_argument("--subset-size", type=int, default=0,
                     help="frames NNCF uses for statistics (default: all)")
    det.add_argument("--preset", choices=("mixed", "performance"), default="mixed",
                     help="NNCF preset: mixed = asymmetric activations, performance = symmetric")
    det.add_argument("--full-bias-correction", action="store_true",
                     help="NNCF's full bias correction instead of the fast one (slower to make)")
    det.add_argument("--keep-float", nargs="*", default=[], metavar="REGEX",
                     help="more layers kept float (regexes of node names, e.g. "
                          "'/model.22/cv3\\.\\d/cv3\\.\\d\\.2/.*' for the class-score outputs)")
    det.add_argument("--accuracy-control", type=float, default=None, metavar="MAX_DROP",
                     help="NNCF's quantize_with_accuracy_control: revert layers to float until "
                          "the F1 against the float model's boxes drops by at most MAX_DROP")
    det.add_argument("--validation-frames", type=Path,
                     default=REPO / "samples/pdestre_session3",
                     help="videos for --accuracy-control (frames between the calibration ones)")
    det.add_argument("--max-reverts", type=int, default=20,
                     help="--accuracy-control: at most this many revert iterations")
    det.add_argument("--out", type=Path, default=None,
                     help="write the IR into this folder instead of beside the weights")
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
