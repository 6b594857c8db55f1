"""README.md stays true: its YAML examples load, and the configuration block is the sample.

The "Configuration" section shows ``configs/sample.yaml`` to a newcomer; when the sample
changes (a new detector backend, re-id settings) and the README does not, these fail.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from pipeline.config import RunConfig, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SAMPLE = REPO / "configs" / "sample.yaml"

_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)


def _section(title: str) -> str:
    """The text of one ``## title`` section of the README (up to the next ``## ``)."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def _load_block(block: str, where: str) -> RunConfig:
    # Paths in the README's blocks are written as if the file lived in configs/.
    return config_from_dict(yaml.safe_load(block), base_dir=SAMPLE.parent, where=where)


def test_every_readme_yaml_block_loads_through_the_config_loader():
    blocks = _YAML_BLOCK.findall(README.read_text())
    assert len(blocks) >= 2, "README.md lost its YAML examples"
    for i, block in enumerate(blocks):
        config = _load_block(block, f"README.md yaml block {i + 1}")
        assert config.cameras


def test_readme_configuration_block_is_the_shipped_sample():
    blocks = _YAML_BLOCK.findall(_section("Configuration"))
    assert len(blocks) == 1, "the Configuration section should show one YAML block"
    shown = _load_block(blocks[0], "README.md, Configuration")
    sample = load_config(SAMPLE)
    # The block may show fewer cameras (it says so); those it shows are the sample's.
    sample_cameras = {c.id: c for c in sample.cameras}
    for camera in shown.cameras:
        assert camera == sample_cameras.get(camera.id), (
            f"README camera {camera.id!r} differs from configs/sample.yaml")
    # Every other setting, stated or defaulted, equals what the sample runs with.
    for field in dataclasses.fields(RunConfig):
        if field.name in ("cameras", "source_file"):
            continue
        ours, theirs = getattr(shown, field.name), getattr(sample, field.name)
        assert ours == theirs, (
            f"README.md's configuration block says {field.name} = {ours}, but "
            f"configs/sample.yaml runs with {theirs}: update the README block")
