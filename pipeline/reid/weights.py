"""Re-id weight files: safetensors state dict + JSON model card, never pickle.

A weight file ``foo.safetensors`` holds the model's state dict (floating tensors in
fp16 by default, integer buffers unchanged) and safetensors metadata::

    {"format": "mtmc-reid-1", "model": <REID_MODELS name>, "config": <json kwargs>}

so the model is rebuilt with ``build_reid_model(name, **config)`` and loaded strictly.
The model card (architecture, training data, metrics, ...) sits beside it as
``foo.json``; it is informative only and not needed for loading.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from pipeline.reid.models import build_reid_model

FORMAT = "mtmc-reid-1"

log = logging.getLogger(__name__)


def model_name(model: nn.Module) -> str:
    """Registry name of ``model`` (its class attribute ``name``).

    Raises:
        TypeError: the class has no ``name`` attribute.
    """
    name = getattr(type(model), "name", None)
    if not isinstance(name, str):
        raise TypeError(
            f"{type(model).__name__} has no class attribute 'name' naming its REID_MODELS entry"
        )
    return name


def save_reid_weights(model: nn.Module, path: Path, *, card: dict, half: bool = True) -> None:
    """Write ``model``'s weights to ``path`` (.safetensors) and ``card`` to ``path``.json.

    Args:
        model: a REID_MODELS model (needs ``name`` class attribute and ``config()``).
        path: destination; parent folders are created. Written atomically (tmp + rename)
            so a reader never sees a half-written file.
        card: JSON-serialisable model card; ``model``/``config`` are added if missing.
        half: store floating tensors as fp16 (halves the file; embeddings change by
            ~1e-3 at most). Integer buffers (e.g. BatchNorm counters) are kept as is.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = model_name(model)
    config = model.config()
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if half and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous().clone()
    metadata = {
        "format": FORMAT,
        "model": name,
        "config": json.dumps(config, sort_keys=True),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.chmod(0o644)  # safetensors creates 0600 files; weights are meant to be shared
    tmp.replace(path)
    full_card = {"model": name, "config": config, **card}
    card_tmp = path.with_name(path.stem + ".json.tmp")
    card_tmp.write_text(json.dumps(full_card, indent=2, default=str) + "\n")
    card_tmp.replace(path.with_suffix(".json"))
    log.info("saved %s weights to %s", name, path)


def read_metadata(path: Path) -> dict[str, str]:
    """Return the safetensors metadata of ``path`` after checking it is an mtmc re-id file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a safetensors file, or not written by :func:`save_reid_weights`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"re-id weights not found: {path}. Train them with `mtmc reid train` "
            "(or point the config at an existing .safetensors file)"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a safetensors file: {exc}") from exc
    if metadata.get("format") != FORMAT or "model" not in metadata or "config" not in metadata:
        raise ValueError(
            f"{path} is not an mtmc re-id weight file (metadata format "
            f"{metadata.get('format')!r}, expected {FORMAT!r}); save weights with "
            "save_reid_weights / `mtmc reid train`"
        )
    return metadata


def load_reid_model(path: Path, *, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild and load a model written by :func:`save_reid_weights`.

    Args:
        path: the .safetensors file.
        device: torch device string for the returned model.

    Returns:
        (model in eval mode with float32 weights, card) where card is the JSON model card
        beside the file if present, else the metadata (``model``, ``config``).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: not an mtmc re-id file, or its tensors do not match the model.
    """
    path = Path(path)
    metadata = read_metadata(path)
    name = metadata["model"]
    config = json.loads(metadata["config"])
    model = build_reid_model(name, **config)
    state = load_file(str(path), device="cpu")
    reference = model.state_dict()
    converted = {}
    for key, value in state.items():
        ref = reference.get(key)
        if ref is not None and ref.is_floating_point() and value.is_floating_point():
            value = value.to(ref.dtype)
        converted[key] = value
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit model {name!r} {config}: {exc}") from exc
    model.to(device).eval()
    return model, read_card(path, metadata)


def load_backbone_weights(model: nn.Module, path: Path) -> set[str]:
    """Load the weights of ``path`` into ``model``, a model of the same registry name
    that may hold more: modules the file lacks (attention inserted into a pretrained
    backbone, under ``model.inserted``) stay as built.

    Returns:
        The state-dict keys the file did not provide (left as built).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: another architecture, or tensors that do not fit.
    """
    source, _ = load_reid_model(path)
    name = model_name(model)
    if model_name(source) != name:
        raise ValueError(f"{path} holds a {model_name(source)!r} model, not {name!r}")
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    inserted = getattr(model, "inserted", None)
    allowed = {f"inserted.{k}" for k in inserted.state_dict()} if inserted is not None else set()
    bad = sorted(set(missing) - allowed) + sorted(unexpected)
    if bad:
        raise ValueError(f"{path} does not fit {name} {model.config()}: {bad[:5]}")
    log.info("initialised from %s (%d new tensors)", path, len(missing))
    return set(missing)


def read_card(path: Path, metadata: dict[str, str] | None = None) -> dict:
    """The model card of a file written by :func:`save_reid_weights`, without loading it.

    The JSON card beside the file if present and readable, else the metadata (``model``,
    ``config``).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: not an mtmc re-id file.
    """
    path = Path(path)
    metadata = metadata if metadata is not None else read_metadata(path)
    card: dict = {"model": metadata["model"], "config": json.loads(metadata["config"])}
    card_path = path.with_suffix(".json")
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except json.JSONDecodeError:
            log.warning("ignoring unreadable model card %s", card_path)
    return card
