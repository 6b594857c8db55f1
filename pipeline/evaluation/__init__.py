"""Tracking evaluation: single-camera MOT metrics and multi-camera identity metrics.

* :mod:`pipeline.evaluation.mot` — HOTA / CLEAR (MOTA) / Identity (IDF1) of MOTChallenge
  files, computed by the ``trackeval`` package: :func:`evaluate_mot`,
  :func:`evaluate_mot_folder`.
* :mod:`pipeline.evaluation.mtmc` — cross-camera IDF1/IDP/IDR with one identity matching
  over all cameras, plus per-camera IDF1: :func:`evaluate_mtmc`.

Names are resolved lazily so that importing the MTMC part does not import trackeval.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate_mot": "mot",
    "evaluate_mot_folder": "mot",
    "read_mot_txt": "mot",
    "evaluate_mtmc": "mtmc",
    "identity_scores": "mtmc",
    "BoxTable": "mtmc",
    "MTMCResult": "mtmc",
    "read_gt_csv": "mtmc",
    "read_trajectories_csv": "mtmc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
