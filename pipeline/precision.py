"""Arithmetic precision: one spelling for every component.

``fp32``, ``bf16`` and ``int8`` name what the detector and the re-id model compute in
(``detector.precision``, ``reid.precision``); ``f32``, OpenVINO's own name, is accepted
as ``fp32``.
"""

from __future__ import annotations

__all__ = ["PRECISIONS", "openvino_hint", "parse_precision"]

PRECISIONS = ("fp32", "bf16", "int8")
_ALIASES = {"f32": "fp32"}


def parse_precision(value: str | None, what: str, *, allow_none: bool = False) -> str | None:
    """The canonical spelling of ``value`` (``f32`` -> ``fp32``).

    Args:
        value: As written in a config or on a command line.
        what: Whose precision, for the message ("detector", "reid").
        allow_none: None means "the runtime's default" for this component.

    Raises:
        ValueError: not one of :data:`PRECISIONS` (or None where allowed).
    """
    if value is None and allow_none:
        return None
    canonical = _ALIASES.get(str(value), str(value)) if value is not None else None
    if canonical not in PRECISIONS:
        choices = ", ".join(PRECISIONS) + (" or null" if allow_none else "")
        raise ValueError(f"{what} precision must be one of {choices} (f32 = fp32), got "
                         f"{value!r}")
    return canonical


def openvino_hint(precision: str) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for a float precision (fp32 -> f32)."""
    return {"fp32": "f32", "bf16": "bf16"}[precision]
