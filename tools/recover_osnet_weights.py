"""Recover a trainable OSNet-x0.25 from the published MSMT17 ONNX file (BN folded).

The network is :class:`pipeline.reid.models.osnet.OSNet`; the recovery (folded
convolutions -> convolution + BatchNorm with the statistics measured on person crops)
is :func:`pipeline.reid.models.osnet_recovery.recover_osnet`. Calibration crops: 512
images spread evenly over ``cuhk03_train`` and the ``extra`` training folders (none of
the test folders). The script checks the result against ONNX Runtime on CUHK01 test
crops and writes float32 safetensors with a model card.

Usage (nothing is downloaded; ~20 s on a 2-core CPU):

    python3 tools/recover_osnet_weights.py \
        --onnx ../shared/data/weights/osnet_x0_25_msmt17.onnx \
        --out weights/osnet_x0_25_msmt17_recovered.safetensors
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.reid.datasets import read_cuhk_folder
from pipeline.reid.embedder import preprocess_crops
from pipeline.reid.models.osnet_recovery import recover_osnet
from pipeline.reid.weights import save_reid_weights

CALIBRATION_FOLDERS = ("cuhk03_train", "caviar4reid", "threedpes", "conreid", "pku_reid")


def _crops(folders: list[Path], count: int) -> np.ndarray:
    paths = [p for folder in folders for p, _, _ in read_cuhk_folder(folder)]
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return preprocess_crops([cv2.imread(str(paths[i])) for i in picks], (256, 128))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path,
                        default=Path("../shared/data/weights/osnet_x0_25_msmt17.onnx"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/reid"))
    parser.add_argument("--out", type=Path,
                        default=Path("weights/osnet_x0_25_msmt17_recovered.safetensors"))
    parser.add_argument("--calibration", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(2)

    calib = _crops([args.data / f for f in CALIBRATION_FOLDERS], args.calibration)
    model = recover_osnet(args.onnx, calib)

    import onnxruntime as ort

    test = _crops([args.data / "cuhk01"], 128)
    ref = ort.InferenceSession(str(args.onnx), providers=["CPUExecutionProvider"]).run(
        None, {"images": test})[0]
    with torch.no_grad():
        out = model.features(torch.from_numpy(test))["global"].numpy()
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    print(f"parity on 128 CUHK01 crops: max |diff| {np.abs(out - ref).max():.2e}, "
          f"min cosine {cos.min():.7f}")
    digest = hashlib.sha256(args.onnx.read_bytes()).hexdigest()
    card = {
        "architecture": "osnet (OSNet-x0.25, our definition)",
        "input_hw": [256, 128], "colour_order": "RGB",
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "provenance": {
            "source": str(args.onnx), "source_sha256": digest,
            "what": "torchreid model-zoo OSNet-x0.25 trained on MSMT17 (ImageNet "
                    "pre-training), exported to ONNX with BatchNorm folded (MIT)",
            "recovery": "tools/recover_osnet_weights.py: folded convs -> conv + BN with "
                        f"statistics of {args.calibration} person crops from "
                        f"{', '.join(CALIBRATION_FOLDERS)}",
            "parity": {"crops": 128, "max_abs_diff": float(np.abs(out - ref).max()),
                       "min_cosine": float(cos.min())},
            "date": datetime.date.today().isoformat(),
        },
        "licence": "MIT (torchreid model zoo)",
    }
    save_reid_weights(model, args.out, card=card, half=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
