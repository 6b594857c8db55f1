"""WILDTRACK loader, calibrations, tracker-like tracklets and association on real data.

Facts checked against the raw files of shared/data/mtmc/wildtrack: 400 annotation files
(frames 0..1995, step 5), 313 persons, person 122 of frame 0 at positionID 456826
visible in views 0, 1, 2 and 5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.lib import wildtrack as wt
from pipeline.association import GroundCue, OfflineAssociator, ground_distance
from pipeline.evaluation.mtmc import evaluate_mtmc
from pipeline.tracking import TrackletBuilder
from pipeline.types import Tracklet

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mtmc" / "wildtrack"
ANNOTATIONS = ROOT / "annotations_positions"
CALIBRATIONS = ROOT / "calibrations"

pytestmark = pytest.mark.skipif(not ANNOTATIONS.is_dir(), reason="WILDTRACK data missing")


@pytest.fixture(scope="module")
def annotations() -> wt.Annotations:
    return wt.load_annotations(ANNOTATIONS)


@pytest.fixture(scope="module")
def calibrations() -> dict[str, wt.Calibration]:
    return wt.load_calibrations(CALIBRATIONS)


def _build(tracks, embeddings=None) -> list[Tracklet]:
    builders = {c: TrackletBuilder(camera_id=c, max_embeddings=10, min_length_s=0.2,
                                   finish_after_s=1e9) for c in wt.CAMERAS}
    for cam, frame, ts, tracks_now, boxes in wt.tracker_frames(tracks, embeddings):
        builders[cam].update(frame, ts, tracks_now, boxes, wt.IMAGE_WH)
    return [t for c in wt.CAMERAS for t in builders[c].finish()]


def _one_hot(tracks, label_of) -> dict:
    """Each track's rows: the one-hot vector of ``label_of(track)`` in every 3rd row."""
    labels = sorted({label_of(t) for t in tracks})
    index = {p: i for i, p in enumerate(labels)}
    out = {}
    for t in tracks:
        e = np.zeros((len(t.frames), len(labels)), np.float32)
        e[::3, index[label_of(t)]] = 1.0
        out[t.key] = e
    return out


# -- loader ---------------------------------------------------------------------------------
def test_loader_reads_known_facts(annotations):
    a = annotations
    assert len(a.frames) == 400 and a.frames[0] == 0 and a.frames[-1] == 1995
    assert np.all(np.diff(a.frames) == 5)
    assert len(a.person_ids) == 313
    assert set(np.unique(a.view).tolist()) == set(range(7))
    first = (a.frame == 0) & (a.person_id == 122)
    assert a.view[first].tolist() == [0, 1, 2, 5]
    assert np.all(a.position_id[first] == 456826)
    np.testing.assert_array_equal(a.xyxy[first][0], [1510, 139, 1561, 299])
    # Every visible view entry of frame 0 is loaded (all-(-1) entries are "not visible").
    raw = json.loads((ANNOTATIONS / "00000000.json").read_text())
    visible = sum(1 for p in raw for v in p["views"]
                  if any(v[k] != -1 for k in ("xmin", "ymin", "xmax", "ymax")))
    assert int(np.sum(a.frame == 0)) == visible == 155
    # Person ids are consistent across views: one positionID per (frame, person).
    key = a.frame * 10_000 + a.person_id
    order = np.argsort(key, kind="stable")
    k, pos = key[order], a.position_id[order]
    assert np.all(pos[1:][k[1:] == k[:-1]] == pos[:-1][k[1:] == k[:-1]])


def test_loader_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        wt.load_annotations(tmp_path)
    (tmp_path / "00000000.json").write_text('[{"personID": 1}]')
    with pytest.raises(ValueError, match="00000000.json"):
        wt.load_annotations(tmp_path)
    with pytest.raises(FileNotFoundError, match="extr_CVLab1.xml"):
        wt.load_calibrations(tmp_path)


def test_max_frames_and_gt_table(annotations):
    part = wt.load_annotations(ANNOTATIONS, max_frames=10)
    assert len(part.frames) == 10 and part.frame.max() == 45
    assert len(part) == int(np.sum(annotations.frame <= 45))
    gt = wt.gt_table(part)
    assert set(gt.camera.tolist()) <= set(wt.CAMERAS)
    assert gt.xyxy[:, 0].min() >= 0 and gt.xyxy[:, 2].max() <= 1920
    assert gt.xyxy[:, 3].max() <= 1080


# -- ground plane ---------------------------------------------------------------------------
def test_position_grid_round_trip():
    ids = np.array([0, 479, 480, 456826, 480 * 1440 - 1])
    xy = wt.position_to_ground(ids)
    np.testing.assert_allclose(xy[0], [-3.0, -9.0])
    np.testing.assert_allclose(xy[1], [-3.0 + 479 * 0.025, -9.0])
    np.testing.assert_allclose(xy[3], [-3.0 + 346 * 0.025, -9.0 + 951 * 0.025])
    np.testing.assert_array_equal(wt.ground_to_position(xy), ids)


def test_calibration_projects_positions_onto_the_annotated_feet(annotations, calibrations):
    a = annotations
    for view, cam in enumerate(wt.CAMERAS):
        s = a.select(a.view == view)
        cal = calibrations[cam]
        ground = wt.position_to_ground(s.position_id)
        world = np.column_stack([ground, np.zeros(len(ground))])
        pix = cal.project(world)
        # Exact round trip pixel -> ground through the ground homography.
        np.testing.assert_allclose(cal.image_to_ground(pix), ground, atol=1e-6)
        foot = np.column_stack([(s.xyxy[:, 0] + s.xyxy[:, 2]) / 2, s.xyxy[:, 3]])
        height = s.xyxy[:, 3] - s.xyxy[:, 1]
        err = np.linalg.norm(pix - foot, axis=1) / height
        assert np.median(err) < 0.06, cam  # measured 2-5 % of the box height
        back = np.linalg.norm(cal.image_to_ground(foot) - ground, axis=1)
        assert np.median(back) < 0.2, cam  # measured 7-12 cm
        # Another camera's calibration does not fit: the check can fail.
        wrong = calibrations[wt.CAMERAS[(view + 1) % 7]]
        assert np.median(np.linalg.norm(wrong.image_to_ground(foot) - ground, axis=1)) > 1.0


def test_original_intrinsics_carry_distortion(calibrations):
    raw = wt.load_calibrations(CALIBRATIONS, intrinsics="original")
    assert np.any(raw["C1"].dist_coeffs) and not np.any(calibrations["C1"].dist_coeffs)
    with pytest.raises(ValueError, match="intrinsics"):
        wt.load_calibrations(CALIBRATIONS, intrinsics="raw")


# -- tracker-like tracks --------------------------------------------------------------------
def test_tracks_are_deterministic_per_seed(annotations):
    part = annotations.select(annotations.frame < 300)
    a = wt.synthesize_tracks(part, seed=3)
    b = wt.synthesize_tracks(part, seed=3)
    c = wt.synthesize_tracks(part, seed=4)
    assert [t.key for t in a] == [t.key for t in b]
    for x, y in zip(a, b, strict=True):
        assert x.person_id == y.person_id
        np.testing.assert_array_equal(x.frames, y.frames)
        np.testing.assert_array_equal(x.xyxy, y.xyxy)
    assert len(a) != len(c) or any(
        not np.array_equal(x.xyxy, y.xyxy) for x, y in zip(a, c, strict=False))


def test_tracks_fragment_and_follow_the_gt(annotations):
    part = annotations.select(annotations.frame < 500)
    clean = wt.synthesize_tracks(part, wt.FragmentConfig(miss_prob=0, break_prob=0, jitter=0))
    noisy = wt.synthesize_tracks(part, seed=0)
    runs = {(t.camera_id, t.person_id) for t in clean}
    # Without noise, tracks only split where the person is gone for > 1 s.
    assert len(clean) >= len(runs) and len(noisy) > len(clean)
    assert sum(len(t.frames) for t in noisy) < sum(len(t.frames) for t in clean)
    gt = wt.gt_table(part)
    lookup = {(c, int(f), i): box for c, f, i, box in
              zip(gt.camera, gt.frame, gt.identity, gt.xyxy, strict=True)}
    from pipeline.geometry import iou_matrix

    ious = []
    for t in noisy:
        for f, box in zip(t.frames.tolist(), t.xyxy, strict=True):
            ref = lookup[(t.camera_id, f, str(t.person_id))]
            ious.append(iou_matrix(box[None], ref[None].astype(np.float32))[0, 0])
    assert 0.7 < np.median(ious) < 0.95  # jittered, but the same box
    ids = {}
    for t in noisy:
        assert t.track_id not in ids.setdefault(t.camera_id, set())
        ids[t.camera_id].add(t.track_id)


def test_tracker_frames_feed_the_tracklet_builder(annotations):
    part = annotations.select(annotations.frame < 150)
    tracks = wt.synthesize_tracks(part, seed=1)
    tracklets = _build(tracks, _one_hot(tracks, lambda t: t.person_id))
    by_key = {t.key: t for t in tracks}
    assert len(tracklets) == sum(len(t.frames) >= 2 for t in tracks)
    for tl in tracklets:
        src = by_key[tl.key]
        np.testing.assert_array_equal(tl.frames, src.frames)
        np.testing.assert_allclose(tl.timestamps_s, src.frames / 10.0)
        assert tl.embedding.size > 0 and 0 <= tl.quality <= 1
    # Quality reflects real crowding: some tracklets are mostly covered by others.
    quality = np.array([t.quality for t in tracklets])
    assert 0.2 < np.median(quality) < 1.0 and quality.min() < 0.1


def test_identity_assignment_is_seeded_and_distinct():
    persons = list(range(313))
    a = wt.assign_identities(persons, range(486, 972), seed=0)
    assert a == wt.assign_identities(persons, range(486, 972), seed=0)
    assert a != wt.assign_identities(persons, range(486, 972), seed=1)
    assert len(set(a.values())) == 313 and min(a.values()) >= 486 and max(a.values()) <= 971
    reused = wt.assign_identities(list(range(600)), range(486, 972), seed=0)
    assert len(reused) == 600 and len(set(reused.values())) == 486


def test_truncate_like_box_cuts_the_same_fraction():
    image = np.arange(160 * 60 * 3, dtype=np.uint8).reshape(160, 60, 3)
    cut = wt.truncate_like_box(image, [100, 900, 200, 1300], [100, 900, 200, 1080])
    assert cut.shape[:2] == (72, 60)  # 180 of 400 px visible -> 45 % of 160 rows
    assert wt.truncate_like_box(image, [0, 0, 10, 10], [0, 0, 10, 10]).shape == image.shape


# -- association on real geometry -----------------------------------------------------------
@pytest.fixture(scope="module")
def scene(annotations, calibrations):
    part = annotations.select(annotations.frame < 300)  # 60 annotated frames, 30 s
    tracks = wt.synthesize_tracks(part, seed=0)
    return part, tracks, calibrations


def test_oracle_appearance_associates_well_and_beats_shuffled(scene):
    part, tracks, _ = scene
    gt = wt.gt_table(part)
    oracle = _build(tracks, _one_hot(tracks, lambda t: t.person_id))
    rng = np.random.default_rng(0)
    shuffled_person = dict(zip([t.key for t in tracks],
                               rng.permutation([t.person_id for t in tracks]), strict=True))
    shuffled = _build(tracks, _one_hot(tracks, lambda t: shuffled_person[t.key]))
    assoc = OfflineAssociator.from_params(threshold=0.4)

    def idf1(tracklets) -> float:
        ids = assoc.associate(tracklets)
        return evaluate_mtmc(gt, wt.prediction_table(tracklets, ids)).overall["IDF1"]

    floor = evaluate_mtmc(gt, wt.prediction_table(oracle, [])).overall["IDF1"]
    good, bad = idf1(oracle), idf1(shuffled)
    # Oracle IDF1 is capped by the boxes the fragmented tracks miss (recall ~85 %).
    assert good > 0.85
    assert bad < good - 0.3
    assert floor < 0.4


def test_ground_distance_separates_people_and_the_cue_links_views(scene):
    part, tracks, calibrations = scene
    clean = wt.synthesize_tracks(part, wt.FragmentConfig(jitter=0.0), seed=0)
    tracklets = _build(clean)
    person = {t.key: t.person_id for t in clean}
    points = [wt.ground_points(t, calibrations[t.camera_id]) for t in tracklets]
    mean, count = ground_distance(tracklets, points)
    pid = np.array([person[t.key] for t in tracklets])
    cams = np.array([t.camera_id for t in tracklets])
    seen = (count > 0) & (cams[:, None] != cams[None, :])
    same = seen & (pid[:, None] == pid[None, :])
    other = seen & (pid[:, None] != pid[None, :])
    assert same.sum() > 100 and np.median(mean[same]) < 0.3  # measured 0.13 m
    assert np.quantile(mean[other], 0.05) > 1.0  # measured 2.1 m

    # Geometry alone (orthogonal appearance) links simultaneous views of one person.
    n = len(tracklets)
    blind = [Tracklet(camera_id=t.camera_id, track_id=t.track_id, frames=t.frames,
                      timestamps_s=t.timestamps_s, xyxy=t.xyxy,
                      embedding=np.eye(1, n, i, dtype=np.float32)[0], quality=1.0)
             for i, t in enumerate(tracklets)]
    cue = GroundCue(points_xy_m=points, gate_m=2.5, weight=1.0)
    ids = OfflineAssociator.from_params(threshold=0.4).associate(blind, terms=[cue])
    assert len(ids) < 0.6 * n
    purity = np.mean([len({person[k] for k in g.members}) == 1 for g in ids])
    assert purity > 0.95
    assert len(OfflineAssociator.from_params(threshold=0.4).associate(blind)) == n


def test_ground_gate_forbids_far_apart_simultaneous_tracklets():
    frames = np.arange(10)

    def tl(cam: str, x: float) -> Tracklet:
        return Tracklet(camera_id=cam, track_id=1, frames=frames, timestamps_s=frames / 10.0,
                        xyxy=np.zeros((10, 4)), embedding=np.array([1.0, 0.0]), quality=1.0)

    pair = [tl("a", 0.0), tl("b", 0.0)]
    near = [np.zeros((10, 2)), np.full((10, 2), 0.3)]
    far = [np.zeros((10, 2)), np.full((10, 2), 3.0)]
    assoc = OfflineAssociator.from_params(threshold=0.4)
    assert len(assoc.associate(pair)) == 1
    assert len(assoc.associate(pair, terms=[GroundCue(points_xy_m=near, gate_m=1.5)])) == 1
    assert len(assoc.associate(pair, terms=[GroundCue(points_xy_m=far, gate_m=1.5)])) == 2
    # Fewer simultaneous observations than min_common: left to appearance.
    brief = [np.zeros((10, 2)), np.r_[np.full((2, 2), 3.0), np.full((8, 2), np.nan)]]
    assert len(assoc.associate(pair, terms=[GroundCue(points_xy_m=brief, gate_m=1.5)])) == 1
    assert len(assoc.associate(pair, terms=[GroundCue(points_xy_m=brief, gate_m=1.5,
                                                      min_common=2)])) == 2
    unknown = [np.full((10, 2), np.nan), np.full((10, 2), 3.0)]
    assert len(assoc.associate(pair, terms=[GroundCue(points_xy_m=unknown, gate_m=1.5)])) == 1
    with pytest.raises(ValueError, match="rows"):
        assoc.associate(pair, terms=[GroundCue(points_xy_m=[np.zeros((3, 2))] * 2)])
