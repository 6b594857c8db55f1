"""Re-identification models and the one dict that selects them by name.

Contract shared by every model (see docs/REID.md):

* ``forward(x)`` / ``embed(x)``: float tensor [N, 3, H, W], RGB, ImageNet
  mean/std normalised, H x W = ``model.input_hw`` -> [N, D] L2-normalised
  embedding, D = ``model.embedding_dim``; the same in training and evaluation.
* ``features(x)`` -> dict of un-normalised branch features (e.g. ``global``,
  ``local``) that the training wrapper attaches classifiers to.
* ``config()`` -> JSON-serialisable constructor kwargs, so saved weights can be
  rebuilt without pickling.

Entries are import paths so that choosing one model does not import the others.
"""

from __future__ import annotations

import importlib

import torch.nn as nn

from pipeline.registry import lookup

REID_MODELS: dict[str, str] = {
    "hacnn": "pipeline.reid.models.hacnn:HACNN",
    "rga": "pipeline.reid.models.rga:RGANet",
    "pfsa": "pipeline.reid.models.pfsa:PFSANet",
    "osnet": "pipeline.reid.models.osnet:OSNet",
}


def build_reid_model(name: str, **kwargs: object) -> nn.Module:
    """Instantiate the re-id model registered as ``name`` with keyword arguments.

    Raises:
        ValueError: ``name`` is not in ``REID_MODELS`` (the message lists the choices).
    """
    module_name, class_name = lookup(REID_MODELS, name, "re-id model").split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**kwargs)
