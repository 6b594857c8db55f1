"""Strict configuration loading: unknown keys and bad values fail with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, check_params, load_config
from tests.conftest import REPO


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_load_and_point_at_existing_files():
    for name in ("sample.yaml", "pets09_s2l1.yaml", "pets09_s2l1_motion_only.yaml"):
        config = load_config(REPO / "configs" / name)
        assert config.cameras
        for camera in config.cameras:
            assert Path(camera.source).exists(), camera.source
        assert Path(config.detector.params["weights"]).exists()


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    path = _write(tmp_path, "cameras:\n  - {id: a, source: clips/a.mp4}\n")
    config = load_config(path)
    assert config.cameras[0].source == str(tmp_path / "clips" / "a.mp4")
    assert config.reid.weights == str(tmp_path / "weights" / "hacnn_cuhk.safetensors")


@pytest.mark.parametrize(
    "text, key",
    [
        ("cameras:\n  - {id: a, source: x.mp4}\nbogus: 1\n", "bogus"),
        ("cameras:\n  - {id: a, source: x.mp4, fsp: 10}\n", "fsp"),
        ("cameras:\n  - {id: a, source: x.mp4}\nreid: {wieghts: w}\n", "wieghts"),
        ("cameras:\n  - {id: a, source: x.mp4}\noutput: {video: true}\n", "video"),
    ],
)
def test_unknown_keys_name_the_key_and_the_file(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert repr(key) in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_component_parameter_is_reported():
    class Component:
        def __init__(self, *, alpha: float = 1.0) -> None:
            self.alpha = alpha

    check_params(Component, {"alpha": 2.0}, "tracker", "f.yaml")
    with pytest.raises(ConfigError, match="'beta'.*tracker"):
        check_params(Component, {"beta": 2.0}, "tracker", "f.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "non-empty list"),
        ("cameras: []\n", "non-empty list"),
        ("cameras:\n  - {id: a, source: x}\n  - {id: a, source: y}\n", "unique"),
        ("cameras:\n  - {id: a}\n", "source"),
        ("cameras: [\n", "not valid YAML"),
    ],
)
def test_malformed_configs(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


LIVE = 'cameras:\n  - id: gate\n    source: "rtsp://viewer:secret@10.0.0.5/s1"\n'


def test_camera_stream_options_are_kept_for_live_sources(tmp_path):
    config = load_config(_write(tmp_path, LIVE + "    stream: {stall_s: 2, queue_size: 4, "
                                "rtsp_transport: tcp, open_timeout_s: 5}\n"))
    assert dict(config.cameras[0].stream) == {"stall_s": 2, "queue_size": 4,
                                              "rtsp_transport": "tcp", "open_timeout_s": 5}
    plain = load_config(_write(tmp_path, LIVE))
    assert dict(plain.cameras[0].stream) == {}


@pytest.mark.parametrize(
    "stream, message",
    [
        ("{stal_s: 2}", r"unknown key\(s\) 'stal_s' in cameras\[0\]\.stream \(camera 'gate'\)"
                        r"; allowed: backoff_initial_s, backoff_max_s, open_timeout_s, "
                        r"queue_size, read_timeout_s, rtsp_transport, stall_s, wait_first_s$"),
        ("{fps: 5}", r"'fps' cannot be set here \(fps is a camera key"),
        ("{uri: x}", r"'uri' cannot be set here"),
        ("{queue_size: 0}", r"camera 'gate'\).*queue_size must be an integer >= 1"),
        ("{rtsp_transport: quic}", r"rtsp_transport must be one of tcp, udp"),
        ("{read_timeout_s: soon}", r"read_timeout_s must be a number > 0"),
        ("[1, 2]", r"cameras\[0\]\.stream must be a mapping"),
    ],
)
def test_bad_camera_stream_options_name_the_camera_and_the_file(tmp_path, stream, message):
    # The sources own their options: a run checks them when it is built, before any
    # model loads (pipeline.assembly.check_cameras); the config keeps the mapping.
    from pipeline.assembly import check_cameras

    path = _write(tmp_path, LIVE + f"    stream: {stream}\n")
    with pytest.raises(ConfigError, match=message) as info:
        check_cameras(load_config(path))
    assert str(info.value).startswith(str(path))
    assert "secret" not in str(info.value)


def test_stream_options_are_refused_for_files(tmp_path):
    path = _write(tmp_path, "cameras:\n  - {id: lobby, source: clips/a.mp4, "
                            "stream: {queue_size: 2}}\n")
    from pipeline.assembly import check_cameras

    with pytest.raises(ConfigError) as info:
        check_cameras(load_config(path))
    text = str(info.value)
    assert text.startswith(str(path)) and "camera 'lobby'" in text
    assert "apply only to live sources" in text and "a.mp4 is a file or folder" in text


def test_one_spelling_of_precision_for_detector_and_reid():
    from pipeline.precision import PRECISIONS, parse_precision

    assert PRECISIONS == ("fp32", "bf16", "int8")
    assert parse_precision("f32", "detector") == "fp32"  # OpenVINO's name is accepted
    assert parse_precision(None, "detector", allow_none=True) is None
    for value, allow_none in (("fp16", False), (None, False), ("F32", True)):
        with pytest.raises(ValueError, match="precision must be one of fp32, bf16, int8"):
            parse_precision(value, "reid", allow_none=allow_none)


def test_camera_motion_modes_and_keys_renamed_to_seconds(tmp_path):
    cams = "cameras:\n  - {id: a, source: x.mp4, motion: off}\n  - {id: b, source: y.mp4}\n"
    config = load_config(_write(tmp_path, cams))
    assert [c.motion for c in config.cameras] == ["off", "auto"]  # YAML's off is false
    with pytest.raises(ConfigError, match=r"cameras\[0\].motion \(camera 'a'\).*auto, on or off"):
        load_config(_write(tmp_path, "cameras:\n  - {id: a, source: x.mp4, motion: pan}\n"))
    for section, old, new in (("reid", "refresh_frames", "refresh_s"),
                              ("tracklets", "min_length", "min_length_s")):
        text = f"cameras:\n  - {{id: a, source: x.mp4}}\n{section}: {{{old}: 8}}\n"
        path = _write(tmp_path, text)
        with pytest.raises(ConfigError, match=f"'{old}' is now '{new}', in seconds"):
            if section == "reid":
                load_config(path)
            else:
                from pipeline.tracking import TrackletBuilder  # checked when a run is built

                check_params(TrackletBuilder, load_config(path).tracklets, "tracklets", str(path),
                             exclude=("camera_id", "fps"))


def test_detector_every_is_a_run_setting(tmp_path):
    cams = "cameras:\n  - {id: a, source: x.mp4}\n"
    config = load_config(_write(tmp_path, cams + "detector: {conf: 0.2, every: 2}\n"))
    assert config.detect_every == 2 and dict(config.detector.params) == {"conf": 0.2}
    assert load_config(_write(tmp_path, cams)).detect_every == 1
    for bad in ("0", "1.5", "true", "two"):
        with pytest.raises(ConfigError, match=r"run\.yaml: detector\.every must be an integer"):
            load_config(_write(tmp_path, cams + f"detector: {{every: {bad}}}\n"))
