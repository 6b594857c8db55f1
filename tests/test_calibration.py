"""Ground-plane calibration: parsing and its errors, WILDTRACK projection accuracy, floor
positions in the CSV and the store, area queries, the ground cue, the floor plots."""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.calibration import (
    FloorPositions,
    GroundCalibration,
    calibration_from_config,
    homography_from_points,
)
from pipeline.config import ConfigError, load_config
from tests.conftest import DATA, SAMPLE_CONFIG, SAMPLE_FLOOR_POINTS, make_tracklet

WILDTRACK = DATA / "mtmc" / "wildtrack"
VIEWS = ("CVLab1", "CVLab2", "CVLab3", "CVLab4", "IDIAP1", "IDIAP2", "IDIAP3")


def _wildtrack(name: str, intrinsics: str = "zero") -> GroundCalibration:
    root = WILDTRACK / "calibrations"
    return GroundCalibration.from_opencv(
        name, root / f"intrinsic_{intrinsics}" / f"intr_{name}.xml",
        root / "extrinsic" / f"extr_{name}.xml", unit="cm")


# -- accuracy on real calibrations -----------------------------------------------------------
def test_wildtrack_foot_points_land_on_the_annotated_ground_positions():
    """Every annotated box's foot point through the dataset's calibration files, against
    the person's annotated ground position (2.5 cm grid): median <= 0.3 m per camera."""
    from benchmarks.lib.wildtrack import load_annotations, position_to_ground

    boxes = load_annotations(WILDTRACK / "annotations_positions")
    truth = position_to_ground(boxes.position_id)
    errors = []
    for view, name in enumerate(VIEWS):
        rows = boxes.view == view
        floor = _wildtrack(name).foot_points(boxes.xyxy[rows], (1920, 1080))
        known = np.isfinite(floor).all(axis=1)
        # only boxes cut by the bottom border lose their foot point
        assert known.mean() > 0.88, (name, known.mean())
        error = np.linalg.norm(floor[known] - truth[rows][known], axis=1)
        assert np.median(error) <= 0.3, (name, np.median(error))
        errors.append(error)
    every = np.concatenate(errors)
    assert every.size > 38_000 and np.median(every) <= 0.15 and np.percentile(every, 90) < 0.5


def test_points_recover_a_camera_homography_and_distortion_is_undone():
    camera = _wildtrack("CVLab1")
    pixels = np.array([[200, 1000], [1700, 1000], [1500, 500], [400, 500], [960, 700]], float)
    floor = camera.to_floor(pixels)
    fitted = GroundCalibration.from_points("C1", np.column_stack([pixels, floor]))
    probe = np.array([[300, 900], [1000, 600], [1800, 1050]], float)
    assert np.abs(fitted.to_floor(probe) - camera.to_floor(probe)).max() < 1e-6
    # the raw-lens model must undistort: a pixel of the raw image maps where its
    # undistorted position maps in the zero-distortion model
    raw = _wildtrack("CVLab1", "original")
    assert raw.dist_coeffs is not None
    import cv2

    straight = cv2.undistortPoints(probe.reshape(-1, 1, 2), raw.camera_matrix, raw.dist_coeffs,
                                   P=raw.camera_matrix).reshape(-1, 2)
    flat = GroundCalibration(camera_id="C1", homography=raw.homography)
    assert np.allclose(raw.to_floor(probe), flat.to_floor(straight))


def test_foot_points_unknown_at_the_bottom_border_and_beyond_the_horizon():
    calibration = GroundCalibration.from_points("cam1", SAMPLE_FLOOR_POINTS["cam1"])
    boxes = np.array([[100, 300, 140, 400],   # feet in view
                      [100, 450, 140, 539],   # bottom edge on the border: feet cut off
                      [100, -400, 140, -150]])  # feet above the horizon (y ~ -87)
    floor = calibration.foot_points(boxes, (960, 540))
    assert np.isfinite(floor[0]).all() and np.isnan(floor[1:]).all()
    assert 0 < floor[0, 0] < 8 and 0 < floor[0, 1] < 20


# -- parsing errors --------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "words"), [
    ({"points": [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 5, 5]]}, "collinear"),
    ({"points": [[0, 540, 0, 0], [960, 540, 8, 0], [700, 200, 8, 20]]}, ">= 4"),
    ({"points": [[0, 540, 0], [960, 540, 8], [700, 200, 8], [260, 200, 0]]}, "[u_px, v_px"),
    ({"points": "here"}, "[u_px, v_px"),
    ({"points": [[0, 540, 0, 0]] * 4}, "collinear"),
    ({"intrinsics": "a.xml"}, "intrinsics and extrinsics"),
    ({"points": [[0, 0, 0, 0]] * 4, "unit": "cm"}, "not both"),
    ({"point": []}, "unknown key"),
])
def test_bad_calibration_mappings_are_refused(data, words):
    with pytest.raises(ValueError, match=None) as error:
        calibration_from_config("cam1", data)
    assert words in str(error.value)


def test_bad_calibration_files_are_refused(tmp_path):
    root = WILDTRACK / "calibrations"
    intr, extr = root / "intrinsic_zero" / "intr_CVLab1.xml", root / "extrinsic" / "extr_CVLab1.xml"
    with pytest.raises(ValueError, match="file not found"):
        GroundCalibration.from_opencv("c", tmp_path / "none.xml", extr)
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage><rvec>1 2</rvec>")
    with pytest.raises(ValueError, match="not an OpenCV FileStorage"):
        GroundCalibration.from_opencv("c", intr, bad)
    bad.write_text("<opencv_storage><rvec>1 2 3</rvec></opencv_storage>")
    with pytest.raises(ValueError, match="no <tvec>"):
        GroundCalibration.from_opencv("c", intr, bad)
    bad.write_text("<opencv_storage><rvec>1 2 x</rvec><tvec>1 2 3</tvec></opencv_storage>")
    with pytest.raises(ValueError, match="does not hold numbers"):
        GroundCalibration.from_opencv("c", intr, bad)
    with pytest.raises(ValueError, match="unit must be one of"):
        GroundCalibration.from_opencv("c", intr, extr, unit="inch")


def test_a_calibration_that_cannot_fit_the_image_is_refused():
    # the same points with the pixel and floor columns swapped
    swapped = np.asarray(SAMPLE_FLOOR_POINTS["cam1"], float)[:, [2, 3, 0, 1]]
    with pytest.raises(ValueError, match="lower half of the 960x540 image would span"):
        GroundCalibration.from_points("cam1", swapped).check_image((960, 540))
    # floor lines that meet at v ~ 430: a horizon through the lower half
    steep = [[0, 540, 0, 0], [960, 540, 8, 0], [500, 450, 8, 20], [460, 450, 0, 20]]
    with pytest.raises(ValueError, match="horizon of this calibration crosses the lower half"):
        GroundCalibration.from_points("cam1", steep).check_image((960, 540))
    # WILDTRACK's centimetres read as metres: a camera 100x too high
    root = WILDTRACK / "calibrations"
    high = GroundCalibration.from_opencv("c", root / "intrinsic_zero" / "intr_CVLab1.xml",
                                         root / "extrinsic" / "extr_CVLab1.xml", unit="m")
    with pytest.raises(ValueError, match="would span"):
        high.check_image((1920, 1080))
    _wildtrack("CVLab1").check_image((1920, 1080))  # the real one passes


def test_points_straddling_the_horizon_are_refused():
    """Four exact correspondences of one homography, one pixel above its horizon (its
    floor point lies behind the camera): no floor can be seen so."""
    truth = GroundCalibration.from_points("cam1", SAMPLE_FLOOR_POINTS["cam1"]).homography
    pixels = np.array([[100, 500], [800, 500], [600, 300], [480, -300]], float)
    homo = np.column_stack([pixels, np.ones(4)]) @ truth.T
    assert (homo[:3, 2] > 0).all() and homo[3, 2] < 0
    with pytest.raises(ValueError, match="both sides of the horizon"):
        homography_from_points(pixels, homo[:, :2] / homo[:, 2:])


def _sample_with(tmp_path: Path, calibration: dict, index: int = 1) -> Path:
    """The sample config with one camera's calibration mapping set (YAML text)."""
    import yaml

    data = yaml.safe_load(SAMPLE_CONFIG.read_text())
    for camera in data["cameras"]:
        camera["source"] = str((SAMPLE_CONFIG.parent / camera["source"]).resolve())
    data["cameras"][index]["calibration"] = calibration
    for section in ("detector", "reid"):
        data[section]["weights"] = str((SAMPLE_CONFIG.parent / data[section]["weights"]).resolve())
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("calibration", "words"), [
    ({"points": [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 5, 5]]}, "collinear"),
    ({"intrinsics": "missing.xml", "extrinsics": "missing.xml"}, "file not found"),
    ({"points": np.asarray(SAMPLE_FLOOR_POINTS["cam1"])[:, [2, 3, 0, 1]].tolist()},
     "lower half"),
])
def test_a_bad_calibration_stops_the_run_with_one_line_naming_camera_and_key(
        tmp_path, capsys, calibration, words):
    from pipeline.cli import main

    config = _sample_with(tmp_path, calibration)
    code = main(["run", str(config), "--out", str(tmp_path / "out"), "--max-frames", "2",
                 "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert str(config) in lines[0] and "cameras[1]" in lines[0] and "'cam2'" in lines[0]
    assert words in lines[0]
    assert not (tmp_path / "out" / "trajectories.csv").exists()


def test_relative_calibration_files_resolve_against_the_config(tmp_path):
    root = WILDTRACK / "calibrations"
    config = _sample_with(tmp_path, {"intrinsics": str(root / "intrinsic_zero" / "intr_CVLab1.xml"),
                                     "extrinsics": "extr.xml", "unit": "cm"})
    (tmp_path / "extr.xml").write_bytes((root / "extrinsic" / "extr_CVLab1.xml").read_bytes())
    camera = load_config(config).cameras[1]
    assert camera.calibration["extrinsics"] == str(tmp_path / "extr.xml")


def test_floor_plan_errors_name_the_key(tmp_path):
    from pipeline.assembly import floor_plan

    config = load_config(SAMPLE_CONFIG)
    for plan, words in (({"origin_m": [0, 0]}, "image"),
                        ({"image": str(tmp_path / "no.png")}, "file not found"),
                        ({"image": str(SAMPLE_CONFIG), "px_per_m": 0}, "px_per_m > 0"),
                        ({"image": str(SAMPLE_CONFIG), "scale": 2}, "unknown key")):
        with pytest.raises(ConfigError, match="output.floor_plan") as error:
            floor_plan(replace(config, output=replace(config.output, floor_plan=plan)))
        assert words in str(error.value)


# -- the ground cue in association -----------------------------------------------------------
def test_floor_cue_forbids_far_simultaneous_pairs_of_calibrated_cameras_only():
    from pipeline.association import FloorCue

    positions = FloorPositions({
        "cam1": GroundCalibration.from_points("cam1", SAMPLE_FLOOR_POINTS["cam1"]),
        "cam2": GroundCalibration.from_points("cam2", SAMPLE_FLOOR_POINTS["cam2"])})
    positions.check("cam1", (960, 540))
    positions.check("cam2", (960, 540))
    frames = list(range(10))
    box = [400, 300, 440, 420]
    tracklets = [make_tracklet("cam1", 1, frames, [1, 0]), make_tracklet("cam2", 1, frames, [1, 0]),
                 make_tracklet("cam3", 1, frames, [1, 0]), make_tracklet("cam1", 2, frames, [1, 0])]
    for t in tracklets:
        t.xyxy = np.tile(np.asarray(box, np.float32), (len(frames), 1))
    # cam1 track 2 stands 0.2 m from track 1 (an overlapping view would see it so)
    tracklets[3].xyxy = tracklets[3].xyxy + np.float32([6, 0, 6, 0])
    dist = np.full((4, 4), 0.1)
    _, forbid = FloorCue(positions=positions)(tracklets, dist, np.zeros((4, 4), bool))
    assert forbid[0, 1] and forbid[1, 0]  # 30 m apart at the same moments
    assert not forbid[0, 2] and not forbid[1, 2]  # cam3 has no calibration: left alone
    assert not forbid[0, 3]  # 0.2 m apart
    apart = np.linalg.norm(positions.boxes("cam1", tracklets[0].xyxy[:1])
                           - positions.boxes("cam1", tracklets[3].xyxy[:1]))
    assert 0.05 < apart < 0.5
    blended, _ = FloorCue(positions=positions, weight=0.5)(tracklets, dist,
                                                           np.zeros((4, 4), bool))
    assert blended[0, 3] == pytest.approx(0.5 * 0.1 + 0.5 * apart / 2.5)
    assert blended[0, 2] == 0.1  # no floor position on cam3: appearance only


def test_ground_cue_joins_association_with_two_calibrated_cameras(tmp_path):
    from pipeline.assembly import build_association, floor_positions
    from pipeline.association import FloorCue

    config = load_config(SAMPLE_CONFIG)
    one = replace(config, cameras=(replace(config.cameras[0], calibration={
        "points": SAMPLE_FLOOR_POINTS["cam1"]}), *config.cameras[1:]))
    two = replace(one, cameras=(one.cameras[0], replace(one.cameras[1], calibration={
        "points": SAMPLE_FLOOR_POINTS["cam2"]}), *one.cameras[2:]))
    assert build_association(one, False, floor_positions(one)).terms == ()
    terms = build_association(two, False, floor_positions(two)).terms
    assert len(terms) == 1 and isinstance(terms[0], FloorCue) and terms[0].weight == 0
    online = build_association(two, True, floor_positions(two))
    assert online.mode == "online" and isinstance(online.terms[0], FloorCue)
    tuned = replace(two, association=replace(two.association, params={
        **two.association.params, "ground": {"gate_m": 4.0, "weight": 0.3}}))
    cue = build_association(tuned, False, floor_positions(tuned)).terms[0]
    assert (cue.gate_m, cue.weight) == (4.0, 0.3)
    off = replace(two, association=replace(two.association, params={
        **two.association.params, "ground": False}))
    assert build_association(off, False, floor_positions(off)).terms == ()
    typo = replace(two, association=replace(two.association, params={
        **two.association.params, "ground": {"gate": 4.0}}))
    with pytest.raises(ConfigError, match="association.ground"):
        build_association(typo, False, floor_positions(typo))


# -- floor positions in a run's outputs ------------------------------------------------------
def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_run_writes_floor_positions_of_calibrated_cameras_to_csv_and_store(
        calibrated_sample_run):
    out, summary, _ = calibrated_sample_run
    rows = _csv(out / "trajectories.csv")
    calibrations = {c: GroundCalibration.from_points(c, p) for c, p in SAMPLE_FLOOR_POINTS.items()}
    checked = 0
    for camera in ("cam1", "cam2", "cam3", "cam4"):
        mine = [r for r in rows if r["camera"] == camera]
        assert mine, camera
        if camera not in calibrations:
            assert all(r["x_m"] == r["y_m"] == "" for r in mine)
            continue
        boxes = np.array([[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in mine])
        expected = calibrations[camera].foot_points(boxes, (960, 540))
        got = np.array([[float(r["x_m"] or "nan"), float(r["y_m"] or "nan")] for r in mine])
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        known = np.isfinite(expected).all(axis=1)
        assert known.mean() > 0.9
        # the CSV's boxes are rounded to 0.01 px, its positions to 1 mm
        assert np.abs(got[known] - expected[known]).max() < 0.01
        checked += int(known.sum())
    assert checked > 100
    with sqlite3.connect(out / "run.sqlite") as db:
        stored = db.execute("SELECT camera, frame, track_id, x_m, y_m FROM rows "
                            "ORDER BY seq").fetchall()
    assert stored == [(r["camera"], int(r["frame"]), int(r["track_id"]),
                       float(r["x_m"]) if r["x_m"] else None,
                       float(r["y_m"]) if r["y_m"] else None) for r in rows]
    assert (out / "plots" / "floor.png").stat().st_size > 10_000
    assert "plots/floor.png" in summary["outputs"]["plots"]


def test_area_query_matches_the_csv_rows_inside_the_rectangle(calibrated_sample_run):
    from pipeline.export.store_read import open_run

    out = calibrated_sample_run[0]
    rows = [r for r in _csv(out / "trajectories.csv") if r["x_m"]]
    x0, y0, x1, y1, t0, t1 = 2.0, 3.0, 6.0, 12.0, 0.5, 2.5
    inside = [r for r in rows if x0 <= float(r["x_m"]) <= x1 and y0 <= float(r["y_m"]) <= y1
              and t0 <= float(r["timestamp_s"]) <= t1]
    assert 10 < len(inside) < len(rows)
    expected: dict[int, int] = {}
    for r in inside:
        expected[int(r["global_id"])] = expected.get(int(r["global_id"]), 0) + 1
    with open_run(out) as store:
        answer = store.in_area(x1, y1, x0, y0, from_s=t0, to_s=t1)  # corners in any order
    assert {p["global_id"]: p["rows"] for p in answer["identities"]} == expected
    assert answer["area"] == [x0, y0, x1, y1]
    assert answer["calibrated_rows"] == sum(t0 <= float(r["timestamp_s"]) <= t1 for r in rows)


def test_area_queries_on_hand_placed_rows(tmp_path):
    """Three people placed by hand; rectangles whose answers are counted by hand."""
    from pipeline.export.store import StoreSink
    from pipeline.export.store_read import open_run
    from pipeline.types import FrameTracks, Identities
    from tests.conftest import make_tracks

    sink = StoreSink(tmp_path / "run.sqlite", ["a", "b"], association="offline",
                     final_csv="trajectories.csv")
    # id 1 walks along y = 1 from x = 0 to 4 (a, t = 0..4); id 2 stands at (10, 10) (b,
    # t = 0..4); id 3 is seen by b at t = 2 at (1, 1.5) and has no floor point at t = 3
    walk = {0: (0.0, 1.0), 1: (1.0, 1.0), 2: (2.0, 1.0), 3: (3.0, 1.0), 4: (4.0, 1.0)}
    for t in range(5):
        sink.on_rows(FrameTracks(camera_id="a", frame_index=t, timestamp_s=float(t),
                                 size_wh=(100, 100), tracks=make_tracks([1], [[0, 0, 9, 9]]),
                                 global_ids=[1], floor_xy=[walk[t]]))
        ids, xy = [2], [(10.0, 10.0)]
        if t in (2, 3):
            ids, xy = [2, 3], [(10.0, 10.0), (1.0, 1.5) if t == 2 else (np.nan, np.nan)]
        sink.on_rows(FrameTracks(camera_id="b", frame_index=t, timestamp_s=float(t),
                                 size_wh=(100, 100),
                                 tracks=make_tracks(ids, [[0, 0, 9, 9]] * len(ids)),
                                 global_ids=ids, floor_xy=xy))
    sink.on_identities(Identities(global_of={("a", 1): 1, ("b", 2): 2, ("b", 3): 3}))
    sink.close()
    with open_run(tmp_path) as store:
        def who(*area, **window):
            return {p["global_id"]: p["rows"] for p in store.in_area(*area, **window)["identities"]}

        assert who(0.5, 0.0, 2.5, 2.0) == {1: 2, 3: 1}       # x = 1, 2 of id 1; id 3
        assert who(0.5, 0.0, 2.5, 2.0, from_s=2.5) == {}      # id 3 has no point at t = 3
        assert who(-1, -1, 100, 100, to_s=0) == {1: 1, 2: 1}
        assert who(9, 9, 11, 11, from_s=1, to_s=3) == {2: 3}
        assert who(20, 20, 30, 30) == {}
        assert store.in_area(-1, -1, 100, 100)["calibrated_rows"] == 5 + 5 + 1
        paths = store.floor_paths()
        assert paths[1]["x"] == [0.0, 1.0, 2.0, 3.0, 4.0] and paths[3]["t"] == [2.0]


def test_mtmc_query_area_prints_the_identities(calibrated_sample_run, capsys):
    from pipeline.cli import main

    out = calibrated_sample_run[0]
    assert main(["query", str(out), "--area", "0,0,8,20", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["identities"] and all("cam3" not in p["cameras"]
                                        for p in answer["identities"])
    assert main(["query", str(out), "--area", "0,0,8,20", "--from", "1", "--to", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("floor area x 0..8 m, y 0..20 m, 1 s to 2 s:")


def test_a_store_without_floor_columns_is_still_read(calibrated_sample_run, tmp_path):
    """Version 1 stores (before floor positions) open; an area query explains itself."""
    import shutil

    from pipeline.export.store_read import StoreError, open_run

    out = tmp_path / "old"
    shutil.copytree(calibrated_sample_run[0], out)
    with sqlite3.connect(out / "run.sqlite") as db:
        db.execute("ALTER TABLE rows DROP COLUMN x_m")
        db.execute("ALTER TABLE rows DROP COLUMN y_m")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with open_run(out) as store:
        assert store.identities() and store.floor_paths() == {}
        with pytest.raises(StoreError, match="before rows had floor positions"):
            store.in_area(0, 0, 1, 1)
        path, rows = store.export_reviewed()
    assert rows == len(_csv(path)) and all(r["x_m"] == "" for r in _csv(path))
