"""Re-id protocol evaluation (``mtmc reid eval``) and a detector-misalignment study.

CUHK01 protocol (shared/data/reid/README.md): test ids 0486-0971, every image of
those ids (2 per camera per id); camera 1 as query / camera 2 as gallery, and the
reverse; cosine similarity; Rank-1/5/10 and mAP, no re-ranking. All test images are
embedded once and reused by both directions.

Misalignment study: query crops are re-cut from a randomly perturbed box (centre
shifted by up to +-p of the box size, width/height scaled by up to +-p; parts that
fall outside the image are padded, as a detector box reaching past the person would
show background), the gallery stays clean, and Rank-1 is reported per level.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.precision import PRECISIONS
from pipeline.reid.datasets import load_protocol
from pipeline.reid.metrics import cosine_distance, evaluate_rank

__all__ = ["add_arguments", "evaluate_protocol", "main", "misalign_crop"]

logger = logging.getLogger(__name__)

EmbedFn = Callable[[Sequence[np.ndarray]], np.ndarray]
"""BGR uint8 crops -> (N, D) embeddings."""

RANKS = (1, 5, 10)


def misalign_crop(
    image: np.ndarray, p: float, rng: np.random.Generator, *, pad: str = "edge"
) -> np.ndarray:
    """Re-cut a tight person crop from a randomly perturbed box.

    Args:
        image: (H, W, 3) uint8 crop whose full extent is the "true" box.
        p: Perturbation level as a fraction of the box size (e.g. 0.1 = +-10 %):
            the centre moves by U(-p, p) * (W, H), width and height are scaled by
            1 + U(-p, p) each.
        rng: Random generator (four draws per call).
        pad: "edge" (replicate border pixels) or "zero" for the part outside ``image``.

    Returns:
        The new crop, uint8 (h', w', 3), at least 1 x 1.
    """
    h, w = image.shape[:2]
    du, dv, su, sv = rng.uniform(-p, p, size=4)
    bw, bh = w * (1.0 + su), h * (1.0 + sv)
    cx, cy = w / 2.0 + du * w, h / 2.0 + dv * h
    x1, y1 = round(cx - bw / 2), round(cy - bh / 2)
    x2, y2 = max(round(cx + bw / 2), x1 + 1), max(round(cy + bh / 2), y1 + 1)
    left, top = max(0, -x1), max(0, -y1)
    right, bottom = max(0, x2 - w), max(0, y2 - h)
    if left or top or right or bottom:
        border = cv2.BORDER_REPLICATE if pad == "edge" else cv2.BORDER_CONSTANT
        image = cv2.copyMakeBorder(image, top, bottom, left, right, border, value=0)
        x1, x2, y1, y2 = x1 + left, x2 + left, y1 + top, y2 + top
    return image[y1:y2, x1:x2].copy()


def _direction(emb_q, q, emb_g, g) -> dict:
    q_pid = np.array([s[1] for s in q])
    q_cam = np.array([s[2] for s in q])
    g_pid = np.array([s[1] for s in g])
    g_cam = np.array([s[2] for s in g])
    res = evaluate_rank(cosine_distance(emb_q, emb_g), q_pid, g_pid, q_cam, g_cam,
                        max_rank=max(RANKS))
    out = {f"rank{k}": res.rank(k) for k in RANKS}
    out.update(mAP=res.mAP, num_query=len(q), num_gallery=len(g), num_valid=res.num_valid)
    return out


def evaluate_protocol(
    embed_fn: EmbedFn,
    *,
    root: Path,
    protocol: str = "cuhk01",
    misalign: Sequence[float] = (),
    seed: int = 0,
    pad: str = "edge",
    max_ids: int | None = None,
) -> dict:
    """Evaluate an embedding function on a re-id protocol.

    Args:
        embed_fn: Maps a list of BGR uint8 crops to (N, D) embeddings.
        root: Folder holding the protocol's data (e.g. shared/data/reid).
        protocol: A ``pipeline.reid.datasets.load_protocol`` name. For "cuhk01" both
            directions (camera 1 -> 2 and 2 -> 1) are evaluated.
        misalign: Perturbation levels p for the misalignment study (empty: none).
        seed: Seed of the misalignment perturbations (same per level).
        pad: Padding for misaligned crops, "edge" or "zero".
        max_ids: Keep only the first ``max_ids`` test ids (quick checks, tests).

    Returns:
        {"protocol", "directions": {name: {rank1, rank5, rank10, mAP, num_query,
        num_gallery, num_valid, misalign: {p: {rank1, rank1_drop}}}}, "num_images",
        "embed_seconds"}. Accuracies are fractions in 0..1.
    """
    split = load_protocol(protocol, Path(root))
    query, gallery = list(split.query), list(split.gallery)
    if max_ids is not None:
        keep = sorted({s[1] for s in query} | {s[1] for s in gallery})[:max_ids]
        keep_set = set(keep)
        query = [s for s in query if s[1] in keep_set]
        gallery = [s for s in gallery if s[1] in keep_set]
    directions = {f"{split.name}": (query, gallery)}
    if protocol == "cuhk01":
        directions = {"cam1->cam2": (query, gallery), "cam2->cam1": (gallery, query)}

    samples = {s[0]: s for s in query + gallery}
    paths = sorted(samples)
    images = {}
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read re-id image {path}")
        images[path] = image
    start = time.perf_counter()
    emb = np.asarray(embed_fn([images[p] for p in paths]), np.float32)
    embed_seconds = time.perf_counter() - start
    row = {p: i for i, p in enumerate(paths)}

    result: dict = {"protocol": protocol, "directions": {}, "num_images": len(paths)}
    for name, (q, g) in directions.items():
        emb_q = emb[[row[s[0]] for s in q]]
        emb_g = emb[[row[s[0]] for s in g]]
        metrics = _direction(emb_q, q, emb_g, g)
        if misalign:
            metrics["misalign"] = {}
        for level in misalign:
            rng = np.random.default_rng(seed)
            crops = [misalign_crop(images[s[0]], level, rng, pad=pad) for s in q]
            t0 = time.perf_counter()
            emb_mq = np.asarray(embed_fn(crops), np.float32)
            embed_seconds += time.perf_counter() - t0
            r1 = _direction(emb_mq, q, emb_g, g)["rank1"]
            metrics["misalign"][str(level)] = {
                "rank1": r1, "rank1_drop": metrics["rank1"] - r1,
            }
        result["directions"][name] = metrics
    result["embed_seconds"] = embed_seconds
    return result


# -- command line -----------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mtmc reid eval`` options to ``parser``."""
    parser.add_argument("--weights", type=Path, required=True,
                        help="our .safetensors file or an .onnx re-id model")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/reid"),
                        help="re-id data root (default: ../shared/data/reid)")
    parser.add_argument("--protocol", default="cuhk01", help="evaluation protocol")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--misalign", default="",
                        help="comma-separated misalignment levels, e.g. 0.1,0.2")
    parser.add_argument("--seed", type=int, default=0, help="misalignment seed")
    parser.add_argument("--pad", choices=("edge", "zero"), default="edge",
                        help="padding of misaligned query crops")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--interpolation", choices=("linear", "area", "cubic"),
                        default="linear", help="crop resize mode")
    parser.add_argument("--backend", choices=("auto", "torch", "openvino", "onnx"),
                        default="auto",
                        help="inference backend; auto: onnx for .onnx, openvino for .xml, torch "
                        "otherwise")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="torch autocast / OpenVINO inference precision; int8: the "
                             "OpenVINO INT8 IR beside the safetensors file")
    parser.add_argument("--flip", action="store_true",
                        help="test-time augmentation: average each crop's embedding with "
                        "its mirror image's (reported separately from the plain protocol)")
    parser.add_argument("--input-hw", default=None,
                        help="H,W for ONNX files with a dynamic input size")
    parser.add_argument("--input", default=None, dest="input_spec",
                        help="the input the model expects: a preset (imagenet, bgr255 for "
                        "Intel's Open Model Zoo re-id IRs) or JSON {colour_order, scale, "
                        "mean, std}; default: <stem>.input.json beside the file, else "
                        "imagenet")


def _embedder_from_args(args: argparse.Namespace):
    from pipeline.reid.embedder import CropEmbedder
    from pipeline.reid.runtimes import backend_for

    backend = args.backend
    if backend == "auto":
        backend = backend_for(args.weights)
    input_hw = tuple(int(v) for v in args.input_hw.split(",")) if args.input_hw else None
    return CropEmbedder(weights=args.weights, backend=backend, device=args.device,
                        batch_size=args.batch_size, threads=args.threads,
                        input_hw=input_hw, interpolation=args.interpolation,
                        precision=args.precision, flip=args.flip,
                        input_spec=getattr(args, "input_spec", None))


def main(args: argparse.Namespace) -> int:
    """Run ``mtmc reid eval``; prints a table (or JSON) and returns the exit code."""
    embedder = _embedder_from_args(args)
    levels = [float(v) for v in args.misalign.split(",") if v.strip()]
    t0 = time.perf_counter()
    result = evaluate_protocol(embedder.embed_crops, root=args.data, protocol=args.protocol,
                               misalign=levels, seed=args.seed, pad=args.pad)
    result["weights"] = str(args.weights)
    result["backend"] = embedder.backend
    result["precision"] = embedder.precision
    result["flip"] = embedder.flip
    result["total_seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.weights} on {args.protocol} ({result['num_images']} images, "
          f"{result['total_seconds']:.1f} s)")
    for name, m in result["directions"].items():
        print(f"  {name:12s} Rank-1 {100 * m['rank1']:5.1f}  Rank-5 {100 * m['rank5']:5.1f}  "
              f"Rank-10 {100 * m['rank10']:5.1f}  mAP {100 * m['mAP']:5.1f}  "
              f"({m['num_query']} queries, {m['num_gallery']} gallery)")
        for level, mis in m.get("misalign", {}).items():
            print(f"    misalign +-{100 * float(level):.0f}%: Rank-1 {100 * mis['rank1']:5.1f} "
                  f"(drop {100 * mis['rank1_drop']:.1f} points)")
    return 0
