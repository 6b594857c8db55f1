"""Weight-space interpolation of a fine-tuned re-id model with its starting point
(``mtmc reid interpolate``).

Fine-tuning a pretrained backbone on a few thousand identities of a few campuses makes
it better on cameras like those and worse on others. Interpolating the weights, with
``alpha`` of the fine-tuned model and ``1 - alpha`` of the one it started from (WiSE-FT,
Wortsman et al., CVPR 2022), keeps most of the gain and much of the pretrained model's
breadth, at no cost at inference: the result is one model of the same architecture.
Modules the start lacks (attention inserted for fine-tuning) keep their fine-tuned
weights: they have no pretrained value to return to.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from torch import nn

__all__ = ["add_arguments", "interpolate", "main"]

log = logging.getLogger(__name__)


def interpolate(tuned: nn.Module, start: nn.Module, alpha: float,
                keep: frozenset[str] | set[str] = frozenset()) -> nn.Module:
    """``alpha * tuned + (1 - alpha) * start``, tensor by tensor, into ``tuned``.

    Args:
        tuned: The fine-tuned model (changed in place and returned).
        start: A model of the same class and configuration holding the starting weights.
        alpha: Share of the fine-tuned weights, in [0, 1].
        keep: State-dict keys that keep the fine-tuned value (tensors the start lacks).

    Raises:
        ValueError: ``alpha`` outside [0, 1], or models whose tensors do not correspond.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    a, b = tuned.state_dict(), start.state_dict()
    if a.keys() != b.keys():
        raise ValueError(f"the models differ: {sorted(a.keys() ^ b.keys())[:5]}")
    merged = {}
    for key, value in a.items():
        other = b[key]
        if value.shape != other.shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} vs {tuple(other.shape)}")
        merged[key] = (alpha * value + (1.0 - alpha) * other.to(value.dtype)
                       if value.is_floating_point() and key not in keep else value)
    tuned.load_state_dict(merged)
    return tuned


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mtmc reid interpolate`` options to ``parser``."""
    parser.add_argument("--weights", type=Path, required=True,
                        help="the fine-tuned .safetensors file")
    parser.add_argument("--start", type=Path, default=None,
                        help="the weights it started from (default: its card's init_from)")
    parser.add_argument("--alpha", type=float, default=0.5,
                        help="share of the fine-tuned weights (0.5: the midpoint)")
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors path")


def main(args: argparse.Namespace) -> int:
    """Run ``mtmc reid interpolate``; returns the exit code."""
    from pipeline.reid.models import build_reid_model
    from pipeline.reid.weights import (
        load_backbone_weights,
        load_reid_model,
        model_name,
        save_reid_weights,
    )

    tuned, card = load_reid_model(args.weights)
    start_path = args.start or (Path(card["init_from"]) if card.get("init_from") else None)
    if start_path is None:
        raise ValueError(f"{args.weights}: its card names no init_from; pass --start")
    start = build_reid_model(model_name(tuned), **tuned.config())
    keep = load_backbone_weights(start, start_path)
    interpolate(tuned, start, args.alpha, keep=keep)
    card = {k: v for k, v in card.items() if k not in ("model", "config")}
    card["interpolated"] = {"tuned": str(args.weights), "start": str(start_path),
                            "alpha": args.alpha, "kept_tuned": len(keep)}
    save_reid_weights(tuned, args.out, card=card)
    print(f"wrote {args.out}: {args.alpha} x {args.weights} + {1 - args.alpha:g} x {start_path}")
    return 0
