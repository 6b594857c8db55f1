"""Teachers for re-id training: any embedder's outputs on the training images, cached.

A teacher is just a :class:`~pipeline.reid.embedder.CropEmbedder` (our safetensors, an
ONNX file or an OpenVINO IR with its declared input). Its embeddings of every training
image are computed once per view, plain and mirrored, and stored under the cache folder
keyed by the teachers' files and the images, so a second run (or a resume) reads them in
a second. Several teachers of the same dimension are averaged (each L2-normalised
first); the result is L2-normalised, shape [N, 2, D] (view 0 plain, 1 mirrored).

Why cached views and not a live teacher: on this project's 2-core CPU the strongest
teacher (Intel 0277, 1.99 GFLOPs) embeds ~128 crops/s in bf16 while the OSNet student
trains at ~100 images/s, so running it live on every augmented batch would more than
halve training throughput. The student's shift, erasing and colour changes are then
matched against the clean view with the same mirroring: an invariance target.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["TeacherSpec", "parse_teachers", "teacher_targets"]

log = logging.getLogger(__name__)

TeacherSpec = tuple[Path, str | None]
"""A teacher: (model file, declared input preset/JSON or None for its default)."""


def parse_teachers(spec: str) -> list[TeacherSpec]:
    """``"A.xml@bgr255,B.onnx"`` -> [(A.xml, "bgr255"), (B.onnx, None)].

    Raises:
        FileNotFoundError: a teacher file is missing.
    """
    out: list[TeacherSpec] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        path, _, declared = item.partition("@")
        if not Path(path).is_file():
            raise FileNotFoundError(f"teacher model not found: {path}")
        out.append((Path(path), declared or None))
    return out


def _embedder(path: Path, declared: str | None, threads: int):
    from pipeline.reid.embedder import CropEmbedder
    from pipeline.reid.runtimes import backend_for

    backend = backend_for(path)
    precision = "bf16" if backend in ("openvino", "torch") else "fp32"
    return CropEmbedder(weights=path, backend=backend, threads=threads, batch_size=64,
                        precision=precision, input_spec=declared)


def _key(teachers: Sequence[TeacherSpec], sample_key: str) -> str:
    h = hashlib.sha1(sample_key.encode())
    for path, declared in teachers:
        h.update(str(Path(path).resolve()).encode())
        h.update(str(Path(path).stat().st_size).encode())
        h.update(str(declared).encode())
    return h.hexdigest()[:16]


def teacher_targets(images: np.ndarray, teachers: Sequence[TeacherSpec], *,
                    sample_key: str, cache_dir: Path | None, threads: int = 2) -> np.ndarray:
    """Teacher embeddings of every training image, plain and mirrored.

    Args:
        images: uint8 [N, H, W, 3] RGB training images (already at the student's size;
            resized again to each teacher's input size).
        teachers: One or more (file, declared input) pairs; same output dimension.
        sample_key: A string that identifies ``images`` (e.g. their paths and sizes).
        cache_dir: Where to keep the result (None: no cache).
        threads: Inference threads.

    Returns:
        float32 [N, 2, D], L2-normalised rows; [:, 0] plain, [:, 1] mirrored.

    Raises:
        ValueError: teachers of different output dimensions.
    """
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"teacher_{_key(teachers, sample_key)}.npy"
        if cache.is_file():
            out = np.load(cache)
            if out.shape[0] == len(images):
                log.info("teacher embeddings read from %s", cache)
                return out
    total = None
    for path, declared in teachers:
        embedder = _embedder(Path(path), declared, threads)
        views = []
        for flip in (False, True):
            parts = []
            for start in range(0, len(images), 256):
                chunk = images[start:start + 256]
                if flip:
                    chunk = chunk[:, :, ::-1]
                parts.append(embedder.embed_crops(list(chunk), bgr=False))
            views.append(np.concatenate(parts))
        emb = np.stack(views, axis=1)
        if total is not None and emb.shape[-1] != total.shape[-1]:
            raise ValueError(f"teacher {path} gives {emb.shape[-1]}-d embeddings, the first "
                             f"{total.shape[-1]}-d; average only teachers of one dimension")
        total = emb if total is None else total + emb
        log.info("teacher %s: %d images x 2 views embedded", path, len(images))
    assert total is not None
    total /= np.maximum(np.linalg.norm(total, axis=2, keepdims=True), 1e-12)
    total = total.astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npy")
        np.save(tmp, total)
        tmp.replace(cache)
    return total
