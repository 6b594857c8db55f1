"""Recover a full-precision Ultralytics checkpoint from a YOLO INT8 LiteRT export.

The shipped YOLO weights exist only as LiteRT (``.tflite``) exports with int8 weights
(per-tensor or per-channel scales, zero point 0) and float32 biases; BatchNorm is folded
into every convolution. This script rebuilds the same network in Ultralytics from the
``yolov8n.yaml`` / ``yolo11n.yaml`` that ship inside the ultralytics package, fills each
convolution with the dequantised LiteRT weights (``w = scale * (q - zero_point)``,
OHWI -> OIHW) and each folded bias into the BatchNorm that follows it (BatchNorm is set
to identity: weight 1, running mean 0, running variance ``1 - eps``), and saves an
ordinary Ultralytics checkpoint that loads offline with ``ultralytics.YOLO(path)``.

Matching LiteRT convolutions to PyTorch modules: both graphs are run once on a 640x640
input; every convolution is keyed by (kind, weight shape, output height, output width).
Within a key, execution order is forced by data dependencies in both graphs, so the
n-th LiteRT convolution with a key goes to the n-th PyTorch convolution with that key.
The DFL convolution (fixed arange weights) is not taken from the file. The script then
checks the raw network outputs on a real PETS09 frame against the LiteRT interpreter.

Usage (nothing is downloaded; a few seconds on a 2-core CPU):

    python3 tools/recover_yolo_weights.py \
        --tflite ../shared/data/weights/yolov8n_int8.tflite --out weights/yolov8n_recovered.pt
    python3 tools/recover_yolo_weights.py \
        --tflite ../shared/data/weights/yolo11n_int8.tflite --out weights/yolo11n_recovered.pt
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ["YOLO_OFFLINE"] = "1"

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ARCH = {"yolov8n": "yolov8n.yaml", "yolo11n": "yolo11n.yaml"}
CONV_OPS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dw"}


def _dequantise(detail: dict, raw: np.ndarray) -> np.ndarray:
    """Float32 values of a (possibly int8-quantised) LiteRT constant tensor."""
    if raw.dtype == np.float32:
        return raw.astype(np.float32)
    params = detail["quantization_parameters"]
    scales = np.asarray(params["scales"], np.float32)
    zero_points = np.asarray(params["zero_points"], np.float32)
    if scales.size > 1:  # per-channel along quantized_dimension
        shape = [1] * raw.ndim
        shape[params["quantized_dimension"]] = scales.size
        scales, zero_points = scales.reshape(shape), zero_points.reshape(shape)
    return (raw.astype(np.float32) - zero_points) * scales


def tflite_convs(path: Path) -> list[dict]:
    """Convolutions of a LiteRT file in execution order, weights dequantised to OIHW."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    convs = []
    for op in interpreter._get_ops_details():  # the public API exposes no op list
        kind = CONV_OPS.get(op["op_name"])
        if kind is None:
            continue
        x_index, w_index, b_index = (int(i) for i in op["inputs"][:3])
        weight = _dequantise(details[w_index], interpreter.get_tensor(w_index))
        bias = _dequantise(details[b_index], interpreter.get_tensor(b_index))
        out_shape = details[int(op["outputs"][0])]["shape"]  # NHWC
        if kind == "conv":
            weight = weight.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            if weight.shape[1] == 1 < int(details[x_index]["shape"][3]):
                kind = "dw"  # a grouped CONV_2D (one input channel per group) = depthwise
        else:
            weight = weight.transpose(3, 0, 1, 2)  # 1HWC -> C1HW (groups = C)
        convs.append({"kind": kind, "weight": weight, "bias": bias,
                      "out_hw": (int(out_shape[1]), int(out_shape[2]))})
    return convs


def torch_convs(model: torch.nn.Module) -> list[tuple[str, torch.nn.Conv2d, tuple[int, int]]]:
    """(name, Conv2d, output (H, W)) of every convolution in forward order at 640x640."""
    order: list = []
    names = {module: name for name, module in model.named_modules()}
    hooks = [
        m.register_forward_hook(lambda mod, _i, out: order.append((mod, tuple(out.shape[2:]))))
        for m in model.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, 640, 640))
    for hook in hooks:
        hook.remove()
    return [(names[m], m, hw) for m, hw in order if ".dfl." not in f".{names[m]}."]


def _key(kind: str, weight_shape: tuple[int, ...], out_hw: tuple[int, int]) -> tuple:
    return (kind, tuple(int(s) for s in weight_shape), out_hw)


def recover(tflite: Path, arch: str) -> torch.nn.Module:
    """Build ``arch`` in Ultralytics and fill it from the LiteRT file (eval mode, float32)."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(ARCH[arch], nc=80, verbose=False).eval()
    parents = {}
    for module in model.modules():
        bn = getattr(module, "bn", None)
        if hasattr(module, "conv") and isinstance(bn, torch.nn.BatchNorm2d):
            parents[module.conv] = bn
    pt = torch_convs(model)
    lite = tflite_convs(tflite)
    queues: dict[tuple, list[dict]] = defaultdict(list)
    for conv in lite:
        if conv["weight"].shape == (1, 16, 1, 1):
            continue  # the DFL conv: fixed arange weights, not a module we fill
        queues[_key(conv["kind"], conv["weight"].shape, conv["out_hw"])].append(conv)
    with torch.no_grad():
        for name, conv, out_hw in pt:
            kind = "dw" if conv.groups > 1 else "conv"
            if conv.groups not in (1, conv.in_channels):
                raise ValueError(f"{name}: grouped conv with groups={conv.groups} unsupported")
            queue = queues[_key(kind, tuple(conv.weight.shape), out_hw)]
            if not queue:
                raise ValueError(f"No LiteRT conv left for {name} {tuple(conv.weight.shape)}")
            source = queue.pop(0)
            conv.weight.copy_(torch.from_numpy(source["weight"]))
            bias = torch.from_numpy(source["bias"])
            bn = parents.get(conv)
            if bn is not None:  # folded conv: BN becomes identity carrying the bias
                bn.weight.fill_(1.0)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.bias.copy_(bias)
            elif conv.bias is not None:
                conv.bias.copy_(bias)
            else:
                raise ValueError(f"{name}: LiteRT conv has a bias but the module has none")
    left = sum(len(q) for q in queues.values())
    if left:
        raise ValueError(f"{left} LiteRT convolutions were not used; architecture mismatch")
    return model


def raw_parity(model: torch.nn.Module, tflite: Path) -> dict:
    """Compare raw (1, 84, 8400) outputs on a real PETS09 frame (resized to 640x640)."""
    from ai_edge_litert.interpreter import Interpreter

    capture = cv2.VideoCapture(str(DATA / "video" / "pets09_s2l1" / "vtest.avi"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 399)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError("could not read the PETS09 frame for the parity check")
    rgb = cv2.cvtColor(cv2.resize(frame, (640, 640)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rgb[None])
    interpreter.invoke()
    lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    with torch.no_grad():
        out = model(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0][0].numpy()
    lite_box, out_box = lite[:4] * 640, out[:4]  # LiteRT exports normalise boxes by imgsz
    confident = lite[4:].max(0) > 0.25
    return {
        "box_max_abs_px_confident": float(np.abs(lite_box - out_box)[:, confident].max()),
        "score_max_abs": float(np.abs(lite[4:] - out[4:]).max()),
        "anchors_confident": int(confident.sum()),
    }


def export_metadata(tflite: Path) -> dict:
    """The metadata.json that Ultralytics appends to its LiteRT exports (a zip member)."""
    with zipfile.ZipFile(tflite) as archive:
        return json.loads(archive.read("metadata.json"))


def save(model: torch.nn.Module, out: Path, tflite: Path, arch: str) -> None:
    """Write an Ultralytics checkpoint (float32, a pickle like every Ultralytics .pt)."""
    import ultralytics
    from ultralytics.utils import DEFAULT_CFG_DICT

    metadata = export_metadata(tflite)
    model.names = {int(k): v for k, v in metadata["names"].items()}
    model.args = {**DEFAULT_CFG_DICT, "task": "detect", "model": out.name, "imgsz": 640}
    model.task = "detect"
    checkpoint = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": ultralytics.__version__,
        "license": "AGPL-3.0 (Ultralytics)",
        "description": f"{metadata.get('description', arch)} (recovered to float32)",
        "docs": f"recovered from {tflite.name} by tools/recover_yolo_weights.py",
        "model": model.float(),
        "ema": None,
        "train_args": {"task": "detect", "model": ARCH[arch], "imgsz": 640},
        "train_metrics": None,
        "epoch": -1,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", type=Path, default=DATA / "weights" / "yolov8n_int8.tflite")
    parser.add_argument("--arch", choices=sorted(ARCH), default=None,
                        help="network (default: guessed from the file name)")
    parser.add_argument("--out", type=Path, default=ROOT / "weights" / "yolov8n_recovered.pt")
    args = parser.parse_args()
    arch = args.arch or ("yolo11n" if "11" in args.tflite.name else "yolov8n")
    model = recover(args.tflite, arch)
    parity = raw_parity(model, args.tflite)
    save(model, args.out, args.tflite, arch)
    print(json.dumps({"arch": arch, "out": str(args.out), "raw_parity": parity}, indent=1))


if __name__ == "__main__":
    main()
