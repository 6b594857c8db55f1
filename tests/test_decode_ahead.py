"""Decoding ahead on a thread keeps the ticks and outputs of decoding in the loop."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from pipeline.config import ConfigError, config_from_dict, load_config
from pipeline.runner import RunOptions, run
from pipeline.sources.ahead import DecodeAhead
from tests.conftest import REPO


def test_same_ticks_in_the_same_order_and_errors_surface():
    def ticks():
        yield from ([i, i + 100] for i in range(20))
        raise OSError("cam2: read failed")

    got = []
    with DecodeAhead(ticks(), depth=3) as ahead, pytest.raises(OSError, match="cam2"):
        for tick in ahead:
            got.append(tick)
    assert got == [[i, i + 100] for i in range(20)]


def test_closing_early_ends_the_thread():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    ahead = DecodeAhead(endless(), depth=2)
    assert [next(ahead) for _ in range(5)] == [0, 1, 2, 3, 4]
    ahead.close()
    assert threading.active_count() == before
    with pytest.raises(StopIteration):
        next(ahead)


def test_config_checks_the_depth(tmp_path):
    cameras = [{"id": "a", "source": "x.mp4"}]
    assert config_from_dict({"cameras": cameras}, base_dir=tmp_path, where="t").decode_ahead == 0
    with pytest.raises(ConfigError, match="decode_ahead"):
        config_from_dict({"cameras": cameras, "decode_ahead": -1}, base_dir=tmp_path, where="t")


def test_sample_outputs_identical_with_and_without(tmp_path):
    config = load_config(REPO / "configs" / "sample.yaml")
    config = replace(config, output=replace(config.output, mot=False, plots=False),
                     reid=replace(config.reid, enabled=False))
    options = RunOptions(max_frames=25, progress=False, handle_signals=False)
    outputs = {}
    for depth in (0, 2):
        out = tmp_path / f"ahead{depth}"
        summary = run(replace(config, decode_ahead=depth), out, options)
        assert summary["camera_frames"] == 100
        outputs[depth] = (out / "trajectories.csv").read_text()
    assert outputs[0] == outputs[2] and outputs[0].count("\n") > 50
    assert json.loads((tmp_path / "ahead2" / "summary.json").read_text())["camera_frames"] == 100
