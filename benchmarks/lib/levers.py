"""The benchmarks' lever syntax: config settings changed from the command line.

``NAME=detector.KEY=VALUE,tracker.KEY=VALUE,...`` names a variant of a run config
(``benchmarks.speed --lever``); ``--set`` of the PETS09 and public-detection benchmarks
takes the settings alone. Values are parsed as YAML.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

__all__ = ["SECTIONS", "apply_overrides", "parse_lever"]

SECTIONS = ("detector", "tracker", "association", "reid", "run")
"""What a setting may change: a component section's params, ``reid`` fields, or ``run``
(the top-level ``RunConfig`` fields such as ``threads``)."""


def parse_lever(text: str, reserved: Collection[str] = ()) -> tuple[str, dict[str, object]]:
    """``NAME=KEY=VALUE,KEY=VALUE`` -> (NAME, {KEY: value}); ``reserved`` names are taken.

    Raises:
        SystemExit: a malformed setting, an unknown section, or no new name.
    """
    import yaml

    name, _, settings = text.partition("=")
    overrides = {}
    for item in filter(None, settings.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key.split(".")[0] not in SECTIONS or "." not in key:
            raise SystemExit(f"--lever {text!r}: expected NAME=detector.KEY=VALUE, "
                             "tracker.KEY=VALUE, association.KEY=VALUE, reid.KEY=VALUE or "
                             "run.KEY=VALUE, comma-separated")
        overrides[key] = yaml.safe_load(value)
    if not name or not overrides or name in reserved:
        raise SystemExit(f"--lever {text!r}: give a new variant name and at least one setting")
    return name, overrides


def apply_overrides(config, overrides: dict[str, object]):
    """The config with ``detector.KEY`` / ``tracker.KEY`` / ``association.KEY``
    parameters, ``reid.KEY`` fields and ``run.KEY`` top-level fields replaced."""
    detector = dict(config.detector.params)
    tracker = dict(config.tracker.params)
    association = dict(config.association.params)
    reid, top = {}, {}
    for key, value in overrides.items():
        if key == "detector.every":  # a run setting in the file's detector section
            top["detect_every"] = value
            continue
        section, field = key.split(".", 1)
        {"detector": detector, "tracker": tracker, "association": association, "reid": reid,
         "run": top}[section][field] = value
    return replace(config, detector=replace(config.detector, params=detector),
                   tracker=replace(config.tracker, params=tracker),
                   association=replace(config.association, params=association),
                   reid=replace(config.reid, **reid), **top)
