"""Looking a component up by its config name: one helper, one kind of error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["lookup"]

T = TypeVar("T")


def lookup(family: Mapping[str, T], name: str, what: str) -> T:
    """``family[name]``.

    Args:
        family: A registry (config name -> class or import path).
        name: The name asked for.
        what: What the family holds, for the message ("tracker", "re-id model").

    Raises:
        ValueError: ``name`` is not registered; the message lists the choices.
    """
    try:
        return family[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; choose one of: "
                         f"{', '.join(sorted(family))}") from None
