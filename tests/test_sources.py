"""Frame sources and timestamp alignment, on the real sample clips and synthetic cameras."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from pipeline.sources import (
    SOURCES,
    CameraSet,
    FrameSource,
    ImageFolderSource,
    StreamSource,
    VideoFileSource,
    open_source,
    synchronise,
)
from pipeline.types import Frame
from tests.conftest import DATA

PDESTRE = DATA / "video" / "pdestre_session3"
PETS = DATA / "video" / "pets09_s2l1" / "vtest.avi"
MOT02 = DATA / "mot" / "MOT17-mini" / "train" / "MOT17-02-FRCNN" / "img1"


class SyntheticSource(FrameSource):
    """Tiny frames whose pixel value is the frame index; optional explicit timestamps."""

    def __init__(self, *, camera_id: str, fps: float, n: int, times: list[float] | None = None):
        self.camera_id = camera_id
        self.fps = fps
        self.frame_count = n
        self.size_wh = (4, 2)
        self.times = times
        self.closed = False

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.frame_count):
            t = self.times[i] if self.times else i / self.fps
            yield Frame(self.camera_id, i, t, np.full((2, 4, 3), i % 256, np.uint8))

    def close(self) -> None:
        self.closed = True


def test_pdestre_video_properties_and_all_frames():
    with VideoFileSource(camera_id="cam1", path=PDESTRE / "cam1.webm") as source:
        assert source.fps == pytest.approx(10.0)
        assert source.frame_count == 150
        assert source.size_wh == (960, 540)
        frames = list(source)
    assert len(frames) == 150
    assert [f.index for f in frames] == list(range(150))
    assert frames[37].timestamp_s == pytest.approx(3.7)
    assert all(f.camera_id == "cam1" and f.size_wh == (960, 540) for f in frames[:3])
    assert not np.array_equal(frames[0].image_bgr, frames[100].image_bgr)


def test_pets_video_fps_from_file_and_override():
    source = VideoFileSource(camera_id="pets", path=PETS)
    assert (source.fps, source.frame_count, source.size_wh) == (10.0, 795, (768, 576))
    first = [f.image_bgr for f in itertools.islice(source, 3)]
    # A second pass restarts at frame 0 (the file is reopened).
    again = next(iter(source))
    assert again.index == 0 and np.array_equal(again.image_bgr, first[0])
    source.close()
    source.close()  # idempotent
    slow = VideoFileSource(camera_id="pets", path=PETS, fps=7)
    frame = next(itertools.islice(slow, 14, None))
    assert frame.index == 14 and frame.timestamp_s == pytest.approx(2.0)
    slow.close()


def test_image_folder_sorted_frames():
    source = ImageFolderSource(camera_id="mot02", path=MOT02, fps=30)
    assert source.frame_count == 4 and source.size_wh == (1920, 1080)
    assert [p.name for p in source.files] == [f"00000{i}.jpg" for i in range(1, 5)]
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert frames[3].timestamp_s == pytest.approx(0.1)


def test_open_source_picks_by_uri():
    video = open_source(camera_id="a", uri=PDESTRE / "cam2.webm")
    assert isinstance(video, VideoFileSource) and video.camera_id == "a"
    video.close()
    folder = open_source(camera_id="b", uri=str(MOT02))
    assert isinstance(folder, ImageFolderSource)
    assert folder.fps == 30  # from the MOTChallenge seqinfo.ini next to img1/
    assert open_source(camera_id="b", uri=MOT02, fps=12.5).fps == 12.5
    assert set(SOURCES) == {"video", "images", "stream"}


def test_stream_urls_open_a_stream_source_and_unsupported_schemes_fail_clearly():
    # Nothing listens on port 1: the source starts anyway and keeps retrying.
    live = open_source(camera_id="gate", uri="rtsp://cam:pw@127.0.0.1:1/stream1",
                       stream_options={"open_timeout_s": 0.3, "wait_first_s": 0.1})
    assert isinstance(live, StreamSource)
    assert live.health()["source"] == "rtsp://cam:***@127.0.0.1:1/stream1"
    live.close()
    assert live.health()["state"] == "closed"
    with pytest.raises(ValueError, match=r"rtmp:// streams are not supported.*user:\*\*\*@"):
        open_source(camera_id="gate", uri="rtmp://user:secret@10.0.0.5/stream1")


def test_yaml_stream_options_reach_the_stream_source(tmp_path):
    from pipeline.config import load_config
    from pipeline.executor import stream_options_for

    path = tmp_path / "live.yaml"
    path.write_text(
        "cameras:\n"
        "  - id: gate\n"
        '    source: "rtsp://cam:pw@127.0.0.1:1/stream1"\n'
        "    stream: {open_timeout_s: 0.3, read_timeout_s: 0.7, stall_s: 1.5, queue_size: 2,"
        " rtsp_transport: udp, backoff_max_s: 4, wait_first_s: 0.1}\n")
    camera = load_config(path).cameras[0]
    # The run's overrides (RunOptions.stream_options) win over the camera's mapping.
    options = stream_options_for(camera, 123.0, {"backoff_max_s": 2.0})
    assert options["epoch_s"] == 123.0 and options["backoff_max_s"] == 2.0
    live = open_source(camera_id=camera.id, uri=camera.source, stream_options=options)
    try:
        assert (live.open_timeout_s, live.read_timeout_s, live.stall_s) == (0.3, 0.7, 1.5)
        assert (live._queue_size, live.rtsp_transport, live.backoff_max_s) == (2, "udp", 2.0)
        assert live.epoch_s == 123.0
    finally:
        live.close()


def test_stream_options_are_refused_for_files_and_bad_values_name_the_camera():
    with pytest.raises(ValueError, match=r"'lobby'.*stream options \(queue_size\) apply only "
                                         r"to live sources.*cam2.webm"):
        open_source(camera_id="lobby", uri=PDESTRE / "cam2.webm",
                    stream_options={"queue_size": 2})
    with pytest.raises(ValueError, match=r"'gate' \(rtsp://cam:\*\*\*@.*rtsp_transport must be "
                                         r"one of tcp, udp"):
        StreamSource(camera_id="gate", uri="rtsp://cam:pw@127.0.0.1:1/x",
                     options={"rtsp_transport": "quic"})
    with pytest.raises(ValueError, match="queue_size must be an integer >= 1"):
        StreamSource(camera_id="gate", uri="rtsp://127.0.0.1:1/x", options={"queue_size": 0})
    with pytest.raises(ValueError, match=r"stall_s must be a number > 0 \(seconds\), got '2'"):
        StreamSource(camera_id="gate", uri="rtsp://127.0.0.1:1/x", options={"stall_s": "2"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'stal_s'.*allowed: backoff_initial_s"):
        StreamSource(camera_id="gate", uri="rtsp://127.0.0.1:1/x", options={"stal_s": 2})


def test_missing_file_names_camera_and_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="'lobby'.*nope.mp4"):
        open_source(camera_id="lobby", uri=missing)
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoFileSource(camera_id="lobby", path=missing)


def test_not_a_video_and_empty_folder(tmp_path):
    text = tmp_path / "notes.avi"
    text.write_text("this is not a video")
    with pytest.raises(ValueError, match="'door'.*notes.avi"):
        open_source(camera_id="door", uri=text)
    empty = tmp_path / "frames"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no .*images in"):
        ImageFolderSource(camera_id="door", path=empty, fps=10)
    with pytest.raises(ValueError, match="needs a frame rate"):
        open_source(camera_id="door", uri=empty)
    with pytest.raises(ValueError, match="is a folder"):
        VideoFileSource(camera_id="door", path=empty)


def test_unreadable_image_in_folder(tmp_path):
    (tmp_path / "000001.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(ValueError, match="cannot read image .*000001.jpg"):
        ImageFolderSource(camera_id="c", path=tmp_path, fps=10)


def test_synchronise_real_cameras_in_lockstep():
    sources = [
        VideoFileSource(camera_id=f"cam{i}", path=PDESTRE / f"cam{i}.webm") for i in (1, 2, 3, 4)
    ]
    with CameraSet(sources=sources, max_frames=6) as cameras:
        assert cameras.tick_period_s == pytest.approx(0.1)
        ticks = list(cameras)
    assert len(ticks) == 6
    for k, tick in enumerate(ticks):
        assert [f.camera_id for f in tick] == ["cam1", "cam2", "cam3", "cam4"]
        assert {f.index for f in tick} == {k}
    assert all(s._capture is None for s in sources)  # closed with the set


def test_synchronise_10_and_5_fps():
    fast = SyntheticSource(camera_id="fast", fps=10, n=10)  # 0.0 .. 0.9 s
    slow = SyntheticSource(camera_id="slow", fps=5, n=10)  # 0.0 .. 1.8 s
    ticks = list(synchronise([fast, slow]))
    # 10 ticks while both run, then the slow camera alone at 1.0, 1.2, ..., 1.8 s.
    assert len(ticks) == 15
    assert [len(t) for t in ticks[:10]] == [2, 1] * 5
    assert [f.index for t in ticks for f in t if f.camera_id == "slow"] == list(range(10))
    assert [f.index for t in ticks for f in t if f.camera_id == "fast"] == list(range(10))
    for tick in ticks[:10]:
        assert max(f.timestamp_s for f in tick) - min(f.timestamp_s for f in tick) < 1e-9
    assert [t[0].timestamp_s for t in ticks[10:]] == pytest.approx([1.0, 1.2, 1.4, 1.6, 1.8])
    assert len(list(synchronise([fast, slow], max_frames=4))) == 4


def test_synchronise_uneven_rates_keeps_every_frame_within_half_period():
    cams = [
        SyntheticSource(camera_id="a", fps=10, n=30),
        SyntheticSource(camera_id="b", fps=7, n=21),
    ]
    cameras = CameraSet(sources=cams)
    ticks = list(cameras)
    assert cameras.dropped == {}
    for cam in cams:
        seen = [f.index for t in ticks for f in t if f.camera_id == cam.camera_id]
        assert seen == list(range(cam.frame_count))
    for k, tick in enumerate(ticks):
        assert all(abs(f.timestamp_s - k * 0.1) <= 0.05 + 1e-9 for f in tick)
        assert len({f.camera_id for f in tick}) == len(tick)


def test_synchronise_keeps_newest_due_frame_and_rejects_duplicates():
    # Frames 0 and 1 are both due at tick 0.0 s: the newer one is kept, frame 0 dropped.
    jitter = SyntheticSource(camera_id="j", fps=10, n=4, times=[0.0, 0.01, 0.12, 0.3])
    steady = SyntheticSource(camera_id="s", fps=10, n=4)
    cameras = CameraSet(sources=[steady, jitter])
    ticks = list(cameras)
    assert cameras.dropped == {"j": 1}
    assert [[f.index for f in t if f.camera_id == "j"] for t in ticks] == [[1], [2], [], [3]]
    with pytest.raises(ValueError, match="Duplicate camera ids"):
        list(synchronise([steady, SyntheticSource(camera_id="s", fps=5, n=2)]))
