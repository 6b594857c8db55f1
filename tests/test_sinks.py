"""Output sinks, the association interface's end of run, and the per-camera executor.

Hermetic: synthetic tracks and tracklets, a fake detector and embedder.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.association import OfflineAssociator, OnlineAssociator
from pipeline.executor import InProcessCameras
from pipeline.export import (
    MotSink,
    RevisionSink,
    Sink,
    Sinks,
    TrajectorySink,
    read_revisions,
    read_trajectories,
)
from pipeline.reid.policy import EmbeddingPolicy, PolicyEmbedder
from pipeline.runtime import StageTimer
from pipeline.tracking import TRACKERS, TrackletBuilder
from pipeline.types import Frame, FrameTracks, Identities, Revision
from tests.conftest import make_dets, make_tracklet, make_tracks


def _rows(camera: str, frame: int, ids, gids) -> FrameTracks:
    boxes = [[10.0 * i, 0, 10.0 * i + 5, 20] for i in range(len(ids))]
    return FrameTracks(camera_id=camera, frame_index=frame, timestamp_s=frame / 10,
                       size_wh=(100, 100), tracks=make_tracks(ids, boxes), global_ids=gids)


class _Recorder(Sink):
    def __init__(self, log: list) -> None:
        self.log = log

    def on_rows(self, rows: FrameTracks) -> None:
        self.log.append(("rows", rows.camera_id, rows.frame_index))

    def on_revisions(self, revisions) -> None:
        self.log.append(("revisions", len(revisions)))

    def on_identities(self, identities: Identities) -> None:
        self.log.append(("identities", identities.count))

    def close(self) -> dict:
        self.log.append(("close",))
        return {"recorded": len(self.log)}


def test_sinks_fan_out_in_order_and_finish_files_with_final_ids(tmp_path):
    log: list = []
    rows = TrajectorySink(tmp_path, streamed="trajectories.csv",
                          final="trajectories_final.csv", flush_s=0.0)
    sinks = Sinks([rows, RevisionSink(tmp_path / "revisions.csv", flush_s=0.0),
                   MotSink(tmp_path, ["c1", "c2"], flush_s=0.0), _Recorder(log)])
    sinks.on_rows(_rows("c1", 0, [1, 2], [-1, -1]))
    sinks.on_revisions([Revision(0.1, "c1", 1, -1, 5)])
    sinks.on_revisions([])  # nothing to say: not passed on
    sinks.on_rows(_rows("c2", 1, [7], [5]))
    sinks.on_identities(Identities(global_of={("c1", 1): 5, ("c2", 7): 5, ("c1", 2): 6}))
    outputs = sinks.close()
    assert outputs == {"trajectories": "trajectories.csv",
                       "trajectories_final": "trajectories_final.csv",
                       "revisions": "revisions.csv",
                       "mot": {"c1": "mot/c1.txt", "c2": "mot/c2.txt"}, "recorded": 5}
    assert log == [("rows", "c1", 0), ("revisions", 1), ("rows", "c2", 1), ("identities", 2),
                   ("close",)]
    streamed = read_trajectories(tmp_path / "trajectories.csv")
    final = read_trajectories(tmp_path / "trajectories_final.csv")
    assert streamed.global_id.tolist() == [-1, -1, 5]
    assert final.global_id.tolist() == [5, 6, 5]
    assert read_revisions(tmp_path / "revisions.csv") == [(0.1, "c1", 1, -1, 5)]
    assert (tmp_path / "mot" / "c2.txt").read_text().startswith("2,7,")


def test_failed_run_leaves_streamed_rows_and_no_final_file(tmp_path):
    sink = TrajectorySink(tmp_path, streamed="tracks_local.csv", final="trajectories.csv",
                          flush_s=60.0)
    sink.on_rows(_rows("c1", 0, [1], [-1]))
    Sinks([sink]).abort()
    assert len(read_trajectories(tmp_path / "tracks_local.csv")) == 1
    assert not (tmp_path / "trajectories.csv").exists()


def test_offline_finish_gives_short_tracks_their_own_identity_and_one_count():
    assoc = OfflineAssociator.from_params(threshold=0.3)
    same = [1.0, 0.0, 0.0]
    assert assoc.due(5.0) is False and assoc.snapshot_s is None
    assert assoc.update(now_s=1.0, finished=[make_tracklet("c1", 1, range(0, 10), same)]) == []
    assoc.finish(now_s=3.0, finished=[make_tracklet("c2", 4, range(15, 25), same)],
                 short_tracks=[("c1", 9), ("c2", 3)])
    ids = assoc.identities()
    # one identity for the two tracklets, one each for the two short tracks
    assert ids.global_of == {("c1", 1): 1, ("c2", 4): 1, ("c1", 9): 2, ("c2", 3): 3}
    assert (ids.count, ids.tracklets, ids.short_tracks, ids.multi_camera) == (3, 2, 2, 1)
    assert assoc.global_id("c1", 1) == -1  # offline ids exist only at the end


def test_online_identities_are_the_last_revision_of_each_tracklet():
    assoc = OnlineAssociator.from_params(threshold=0.3, min_s=0.3, every_s=2.0)
    assert assoc.due(0.0) and not assoc.due(1.0) and assoc.due(2.0)
    log = assoc.update(now_s=1.0, open_tracklets=[make_tracklet("c1", 1, range(0, 10),
                                                                [1.0, 0, 0])])
    log += assoc.finish(now_s=2.0, finished=[make_tracklet("c1", 1, range(0, 20), [1.0, 0, 0])],
                        short_tracks=[("c1", 5)])
    final = {(r.camera, r.track_id): r.new_global_id for r in log}
    ids = assoc.identities()
    assert ids.global_of == final == {("c1", 1): 1} and ids.tracklets == 1


def test_embedding_policy_is_validated_and_reset_when_a_camera_comes_back():
    with pytest.raises(ValueError, match="refresh_s"):
        EmbeddingPolicy(refresh_s=-1)
    with pytest.raises(ValueError, match="min_score"):
        EmbeddingPolicy(min_score=1.5)

    class FakeEmbedder:
        embedding_dim = 3

        def embed(self, images, boxes):
            return [np.tile(np.eye(3, dtype=np.float32)[0], (len(b), 1)) for b in boxes]

    class FakeDetector:
        def detect(self, images, camera_ids=None):
            return [make_dets([[10, 10, 50, 110]]) for _ in images]

    policy = PolicyEmbedder(embedder=FakeEmbedder(), camera_ids=["c1"],
                            policy=EmbeddingPolicy(min_score=0.5, refresh_s=10.0))
    cameras = InProcessCameras(
        detector=FakeDetector(), embedding=policy, timer=StageTimer(),
        trackers={"c1": TRACKERS["bytetrack"](min_hits=1)},
        builders={"c1": TrackletBuilder(camera_id="c1", min_length_s=0.1)}, outage_reset_s=3.0)
    image = np.zeros((120, 120, 3), np.uint8)

    def tick(index: int, t: float) -> None:
        cameras.process([Frame(camera_id="c1", index=index, timestamp_s=t, image_bgr=image)])

    for i in range(5):  # a settled track: embedded at birth, then skipped by the schedule
        tick(i, i / 10)
    embedded = policy.embedded
    assert policy.eligible == 5 and embedded < 5
    tick(5, 10.0)  # back after a 9.6 s outage: tracks ended, schedule reset
    assert policy.embedded == embedded + 1
    snapshots, finished = cameras.events(snapshot_s=None)
    assert snapshots == [] and [len(t.frames) for t in finished] == [5]


def test_opening_a_camera_gives_its_frame_rate_to_its_tracker_builder_and_schedule(tmp_path):
    """Durations in seconds become frames at each camera's own rate when it opens."""
    import cv2

    from pipeline.config import CameraConfig
    from pipeline.executor import InProcessCameras
    from pipeline.reid.policy import EmbeddingPolicy, PolicyEmbedder
    from pipeline.runtime import StageTimer
    from pipeline.tracking import TRACKERS, TrackletBuilder

    for name in ("slow", "fast"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "000001.jpg"), np.zeros((48, 64, 3), np.uint8))
    ids = ["slow", "fast"]
    policy = PolicyEmbedder(embedder=None, camera_ids=ids,
                            policy=EmbeddingPolicy(refresh_s=0.8))
    cameras = InProcessCameras(
        detector=None, embedding=policy, timer=StageTimer(),
        trackers={c: TRACKERS["bytetrack"]() for c in ids},
        builders={c: TrackletBuilder(camera_id=c) for c in ids})
    cameras.open([CameraConfig(id="slow", source=str(tmp_path / "slow"), fps=2.0),
                  CameraConfig(id="fast", source=str(tmp_path / "fast"), fps=25.0)],
                 live=False, epoch_s=None)
    try:
        assert [cameras.trackers[c].max_lost_frames for c in ids] == [4, 50]  # 2 s
        assert [cameras.builders[c].min_length for c in ids] == [1, 13]
        assert [policy.schedulers[c].refresh_frames for c in ids] == [2, 20]
    finally:
        cameras.close()


def test_detect_every_runs_the_detector_on_every_nth_frame_and_coasts_between():
    """``detector.every: 3``: each camera's 1st, 4th, 7th ... frame is detected (both
    cameras of a tick in one call) and embedded; the tracker coasts on the others. Their
    rows wait for the camera's next detection and come out with it, the box of a person
    walking right at 4 px a frame interpolated between the two detections; the rows
    after the last detection come from ``drain``, at the predicted boxes."""
    calls = []

    class WalkingPerson:
        def detect(self, images, camera_ids=None):
            calls.append(list(camera_ids))
            return [make_dets([[10 + 4 * int(img[0, 0, 0]), 10,
                                50 + 4 * int(img[0, 0, 0]), 110]]) for img in images]

    class FakeEmbedder:
        embedding_dim = 3

        def embed(self, images, boxes):
            return [np.tile(np.eye(3, dtype=np.float32)[0], (len(b), 1)) for b in boxes]

    ids = ["c1", "c2"]
    policy = PolicyEmbedder(embedder=FakeEmbedder(), camera_ids=ids,
                            policy=EmbeddingPolicy(refresh_s=0.0))
    cameras = InProcessCameras(
        detector=WalkingPerson(), embedding=policy, timer=StageTimer(), detect_every=3,
        trackers={c: TRACKERS["bytetrack"](min_hits=1) for c in ids},
        builders={c: TrackletBuilder(camera_id=c, min_length_s=0.1) for c in ids})
    rows, returned = [], []
    for i in range(9):
        image = np.full((120, 200, 3), i, np.uint8)  # the frame number, for the detector
        out = cameras.process([Frame(camera_id=c, index=i, timestamp_s=i / 10,
                                     image_bgr=image) for c in ids])
        returned.append([(f.camera_id, f.index) for f, _, _ in out])
        rows += [(f.camera_id, f.index, t) for f, t, _ in out]
    assert calls == [ids, ids, ids]  # frames 0, 3, 6
    assert policy.eligible == 6
    # frames 1 and 2 wait for frame 3, 4 and 5 for frame 6; 7 and 8 for the end
    assert returned[1] == returned[2] == [] and returned[7] == returned[8] == []
    # in the order the frames were read: released ones first, camera by camera
    assert returned[3] == [("c1", 1), ("c2", 1), ("c1", 2), ("c2", 2), ("c1", 3), ("c2", 3)]
    drained = cameras.drain()
    assert [(f.camera_id, f.index) for f, _, _ in drained] == \
        [("c1", 7), ("c2", 7), ("c1", 8), ("c2", 8)]
    assert cameras.drain() == []
    rows += [(f.camera_id, f.index, t) for f, t, _ in drained]
    xs = {}
    for cid, index, tracks in rows:
        assert list(tracks.track_id) == [1], (cid, index)
        assert (tracks.det_index[0] == -1) == (index % 3 != 0)
        xs.setdefault(cid, {})[index] = float(tracks.xyxy[0, 0])
    for cid in ids:  # true left edges: 10, 14, ..., 42 (the filter's boxes lag a little)
        x = [xs[cid][i] for i in range(9)]
        for a, b in ((0, 3), (3, 6)):  # between two detections: on the line joining them
            for i in (a + 1, a + 2):
                assert x[i] == pytest.approx(x[a] + (x[b] - x[a]) * (i - a) / 3, abs=1e-3)
        assert x[1] > x[0] + 1  # interpolated, not held at the first box
        assert x[8] > x[7] > x[6] + 2  # predicted after the last detection: moving on
        assert abs(x[8] - 42) < 3
    # the tracklet builders saw every frame, in order
    finished, _ = cameras.finish()
    assert [t.camera_id for t in finished] == ids
    assert all(t.frames.tolist() == list(range(9)) for t in finished)
    with pytest.raises(ValueError, match="detect_every"):
        InProcessCameras(detector=None, embedding=None, timer=StageTimer(), trackers={},
                         builders={}, detect_every=0)
