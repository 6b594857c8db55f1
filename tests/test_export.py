"""Exporters: CSV round trip and incremental flushing, MOT txt, annotated video, plots."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from pipeline.export import (
    CSV_COLUMNS,
    AnnotatedVideoWriter,
    MotWriter,
    TrajectoryCsvWriter,
    color_bgr,
    draw_tracks,
    plot_trajectories,
    read_mot,
    read_trajectories,
    render_videos,
    rewrite_global_ids,
)
from pipeline.types import Tracks
from tests.conftest import DATA

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tracks(ids, boxes, scores) -> Tracks:
    return Tracks(
        track_id=np.array(ids),
        xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        score=np.array(scores, np.float32),
        det_index=np.arange(len(ids)),
    )


def _data_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def test_csv_round_trip(tmp_path):
    path = tmp_path / "out" / "traj.csv"
    with TrajectoryCsvWriter(path) as writer:
        writer.write(camera="cam1", frame=0, timestamp_s=0.0,
                     tracks=_tracks([3, 7], [[1, 2, 30, 80], [100.123, 5, 140.5, 99]], [0.9, 0.41]),
                     global_ids=[1, 2])
        writer.write(camera="cam,2", frame=4, timestamp_s=4 / 7,
                     tracks=_tracks([1], [[0, 0, 10, 20]], [0.55]))
        writer.write(camera="cam1", frame=1, timestamp_s=0.1, tracks=Tracks.empty())
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert text.count("camera,frame") == 1 and text.endswith("\n")
    table = read_trajectories(path)
    assert len(table) == 3 and writer.rows_written == 3
    assert table.camera.tolist() == ["cam1", "cam1", "cam,2"]
    assert table.cameras == ["cam1", "cam,2"]
    assert table.frame.tolist() == [0, 0, 4]
    assert table.global_id.tolist() == [1, 2, -1]
    assert table.track_id.tolist() == [3, 7, 1]
    np.testing.assert_allclose(table.timestamp_s, [0.0, 0.0, 0.5714], atol=1e-9)
    np.testing.assert_allclose(table.xyxy[1], [100.12, 5, 140.5, 99], atol=1e-4)
    np.testing.assert_allclose(table.score, [0.9, 0.41, 0.55], atol=1e-6)
    assert table.xyxy.dtype == np.float32


def test_csv_flushes_whole_rows_while_running(tmp_path):
    path = tmp_path / "live.csv"
    writer = TrajectoryCsvWriter(path, flush_rows=3, flush_s=3600)
    one = _tracks([1], [[0, 0, 5, 5]], [0.5])
    writer.write(camera="a", frame=0, timestamp_s=0.0, tracks=one)
    writer.write(camera="a", frame=1, timestamp_s=0.1, tracks=one)
    assert len(read_trajectories(path)) == 0  # header only: below both thresholds
    writer.write(camera="a", frame=2, timestamp_s=0.2, tracks=one)
    mid = read_trajectories(path)  # readable mid-run, all complete rows
    assert mid.frame.tolist() == [0, 1, 2]
    assert path.read_bytes().endswith(b"\n")
    writer.flush_s = 0.0  # time-based flushing: every batch goes out at once now
    writer.write(camera="a", frame=3, timestamp_s=0.3, tracks=one)
    assert read_trajectories(path).frame.tolist() == [0, 1, 2, 3]
    writer.flush_s = 3600
    writer.write(camera="a", frame=4, timestamp_s=0.4, tracks=one)
    assert len(read_trajectories(path)) == 4
    writer.close()
    writer.close()
    assert read_trajectories(path).frame.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="closed"):
        writer.write(camera="a", frame=5, timestamp_s=0.5, tracks=one)


def test_csv_errors_and_global_id_rewrite(tmp_path):
    local = tmp_path / "local.csv"
    with TrajectoryCsvWriter(local) as writer:
        two = _tracks([1, 2], [[0, 0, 1, 1]] * 2, [1, 1])
        writer.write(camera="c1", frame=0, timestamp_s=0.0, tracks=two)
        one = _tracks([1], [[0, 0, 1, 1]], [1])
        writer.write(camera="c2", frame=0, timestamp_s=0.0, tracks=one)
        with pytest.raises(ValueError, match="global_ids has 1 entries for 2 tracks"):
            writer.write(camera="c1", frame=1, timestamp_s=0.1, tracks=two, global_ids=[5])
    out = tmp_path / "traj.csv"
    assert rewrite_global_ids(local, out, {("c1", 1): 7, ("c2", 1): 7}) == 3
    assert read_trajectories(out).global_id.tolist() == [7, -1, 7]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a trajectory CSV"):
        read_trajectories(bad)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_trajectories(tmp_path / "missing.csv")


def test_mot_writer_tiny_case(tmp_path):
    path = tmp_path / "mot" / "cam1.txt"
    with MotWriter(path) as writer:
        writer.write(0, _tracks([4, 9], [[10, 20, 40, 80], [0.5, 1, 2.5, 4]], [0.9, 0.25]))
        writer.write(2, _tracks([4], [[12, 21, 42, 81]], [0.8]))
        writer.write(3, Tracks.empty())
    assert path.read_text().splitlines() == [
        "1,4,10.00,20.00,30.00,60.00,0.9000,-1,-1,-1",
        "1,9,0.50,1.00,2.00,3.00,0.2500,-1,-1,-1",
        "3,4,12.00,21.00,30.00,60.00,0.8000,-1,-1,-1",
    ]
    frames = read_mot(path)
    assert list(frames) == [1, 3]
    assert frames[1].ids.tolist() == [4, 9]
    np.testing.assert_allclose(frames[1].xyxy, [[10, 20, 40, 80], [0.5, 1, 2.5, 4]])
    np.testing.assert_allclose(frames[3].score, [0.8])


def test_read_mot_real_ground_truth():
    gt = read_mot(DATA / "mot" / "MOT17-mini" / "train" / "MOT17-02-FRCNN" / "gt" / "gt.txt")
    assert min(gt) == 1
    first = gt[1]
    assert first.xyxy.shape[1] == 4 and len(first) > 20
    assert (first.xyxy[:, 2] > first.xyxy[:, 0]).all()


def test_palette_is_stable_and_distinct():
    assert color_bgr(5) == color_bgr(5)
    colours = [color_bgr(i) for i in range(1, 31)]
    assert len(set(colours)) == 30
    assert color_bgr(-1) == color_bgr(0)  # unknown ids share the grey


def test_draw_tracks_uses_identity_colour():
    image = np.zeros((120, 160, 3), np.uint8)
    out = draw_tracks(image, xyxy=np.array([[20, 40, 80, 110]]), track_ids=np.array([3]),
                      global_ids=np.array([6]), caption="cam1 frame 0")
    assert image.sum() == 0  # input untouched
    assert tuple(out[75, 20]) == color_bgr(6)  # left edge of the box


def test_video_writer_readable_with_right_frame_count(tmp_path):
    size = (320, 240)
    with AnnotatedVideoWriter(path=tmp_path / "cam1.mp4", fps=10, size_wh=size) as writer:
        for i in range(7):
            image = np.full((240, 320, 3), 30 * i, np.uint8)
            writer.write(image, xyxy=np.array([[10 + i, 10, 60 + i, 120]]), track_ids=np.array([2]),
                         global_ids=np.array([1]), camera_id="cam1", frame_index=i)
        with pytest.raises(ValueError, match="frame is 100x100"):
            writer.write(np.zeros((100, 100, 3), np.uint8))
    assert writer.path.exists() and writer.frames_written == 7
    capture = cv2.VideoCapture(str(writer.path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 7
    assert frames[0].shape == (240, 320, 3)


def test_render_videos_from_sample_clip(tmp_path):
    csv_path = tmp_path / "traj.csv"
    with TrajectoryCsvWriter(csv_path) as writer:
        for f in range(3):
            writer.write(camera="cam1", frame=f, timestamp_s=f / 10,
                         tracks=_tracks([1], [[100, 100, 160, 300]], [0.9]), global_ids=[4])
    config = SimpleNamespace(cameras=[SimpleNamespace(
        id="cam1", source=str(DATA / "video" / "pdestre_session3" / "cam1.webm"), fps=None)])
    paths = render_videos(config=config, trajectories=csv_path, out_dir=tmp_path / "video",
                          max_frames=5)
    assert [p.stem for p in paths] == ["cam1"]
    capture = cv2.VideoCapture(str(paths[0]))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        960, 540)
    capture.release()


def test_plots_are_valid_pngs(tmp_path):
    csv_path = tmp_path / "traj.csv"
    rng = np.random.default_rng(0)
    with TrajectoryCsvWriter(csv_path) as writer:
        for f in range(20):
            for cam, gid in (("cam1", [1, 2]), ("cam2", [2, -1])):
                x = 50 + 10 * f + rng.normal(0, 2, 2)
                boxes = np.stack([x, np.full(2, 100.0), x + 40, np.full(2, 200.0 + f)], axis=1)
                writer.write(camera=cam, frame=f, timestamp_s=f / 10,
                             tracks=_tracks([1, 2], boxes, [0.9, 0.8]), global_ids=gid)
    paths = plot_trajectories(csv_path, tmp_path / "plots")
    assert [p.name for p in paths] == ["trajectories.png", "timeline.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 5  # something was drawn


def test_trajectory_plot_breaks_lines_where_a_track_is_absent():
    from pipeline.export.plots import _break_gaps

    frames = np.array([0, 1, 2, 10, 11, 20])
    x, y = _break_gaps(frames, np.arange(6.0), np.arange(6.0) * 2)
    # a NaN (matplotlib's line break) after frame 2 and after frame 11, nowhere else
    assert np.isnan(x).nonzero()[0].tolist() == [3, 6] and np.isnan(y).sum() == 2
    assert np.nanmax(x) == 5.0 and len(x) == 8
    x, _ = _break_gaps(np.arange(5), np.arange(5.0), np.arange(5.0))
    assert not np.isnan(x).any()
