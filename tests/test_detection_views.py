"""Per-camera detection views: tile grid, tile merge, ROI polygons, input-size plans,
the config mapping, and a real 1080p MOT17 frame where tiling finds people the plain
384x640 path misses."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import ConfigError, load_config
from pipeline.detection.multiview import CameraDetector
from pipeline.detection.tiling import cut_sides, merge_tiled, tile_grid
from pipeline.detection.views import ViewOptions, plan_view, points_in_polygons
from pipeline.geometry import iou_matrix, linear_assignment, tlwh_to_xyxy
from pipeline.types import Detections

ROOT = Path(__file__).resolve().parents[1]
MOT = ROOT.parent / "shared" / "data" / "mot" / "MOT17-mini" / "train"


@pytest.mark.parametrize(("size", "tile", "overlap"), [
    ((1920, 1080), (1280, 768), 96), ((1920, 1080), (985, 591), 96),
    ((1920, 780), (1280, 768), 200), ((777, 333), (200, 100), 37), ((640, 384), (640, 384), 0),
])
def test_tiles_cover_the_frame_with_the_configured_overlap(size, tile, overlap):
    width, height = size
    tiles = tile_grid(width, height, tile, overlap)
    covered = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in tiles:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert (x2 - x1, y2 - y1) == (min(tile[0], width), min(tile[1], height))
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    xs, ys = sorted(set(tiles[:, 0])), sorted(set(tiles[:, 1]))
    tile_w, tile_h = tiles[0, 2] - tiles[0, 0], tiles[0, 3] - tiles[0, 1]
    # Neighbours overlap by at least the configured amount, and the last tile ends at the edge.
    assert all(tile_w - (b - a) >= overlap for a, b in zip(xs, xs[1:], strict=False))
    assert all(tile_h - (b - a) >= overlap for a, b in zip(ys, ys[1:], strict=False))
    assert tiles[:, 2].max() == width and tiles[:, 3].max() == height


def test_tile_grid_rejects_an_overlap_larger_than_the_tile():
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(1920, 1080, (300, 200), 200)


def _tile_boxes(person, tiles, region):
    """A person as each tile sees it: the box clipped to the tile, with its cut sides."""
    boxes, cuts = [], []
    for tile in tiles:
        clipped = np.array([max(person[0], tile[0]), max(person[1], tile[1]),
                            min(person[2], tile[2]), min(person[3], tile[3])], np.float32)
        if clipped[2] - clipped[0] > 4 and clipped[3] - clipped[1] > 4:
            boxes.append(clipped)
            cuts.append(cut_sides(clipped[None], tile, region)[0])
    return np.array(boxes), np.array(cuts)


@pytest.mark.parametrize("person", [
    [900.0, 520.0, 960.0, 700.0],    # straddles the horizontal border: two partial boxes
    [1250.0, 100.0, 1310.0, 260.0],  # cut by the vertical border, whole in the next tile
    [1200.0, 450.0, 1290.0, 800.0],  # crosses both borders: four pieces
])
def test_boxes_cut_by_a_tile_border_merge_into_one(person):
    region = np.array([0, 0, 1920, 1080])
    tiles = tile_grid(1920, 1080, (1280, 600), 96)  # 2 x 2, overlaps 640 / 120 px
    boxes, cuts = _tile_boxes(np.array(person), tiles, region)
    assert len(boxes) >= 2 and cuts.any()
    scores = np.linspace(0.8, 0.6, len(boxes))
    merged, score = merge_tiled(boxes, scores, cuts)
    assert len(merged) == 1
    np.testing.assert_allclose(merged[0], person, atol=1e-3)
    assert score[0] == pytest.approx(0.8)


def test_merge_keeps_neighbours_that_only_touch_a_cut_box():
    region = np.array([0, 0, 1920, 1080])
    tiles = tile_grid(1920, 1080, (1280, 600), 96)
    cut_person, cuts = _tile_boxes(np.array([900.0, 520.0, 960.0, 700.0]), tiles, region)
    # A second person beside the cut one (same rows, other columns) and a box that is
    # the full-frame pass's copy of the first person.
    others = np.array([[965.0, 500.0, 1030.0, 690.0], [898.0, 522.0, 961.0, 702.0]])
    boxes = np.concatenate([cut_person, others])
    cut = np.concatenate([cuts, np.zeros((2, 4), bool)])
    merged, _ = merge_tiled(boxes, np.array([0.7] * len(cut_person) + [0.9, 0.95]), cut)
    assert len(merged) == 2
    assert (iou_matrix(merged, others).max(0) > 0.9).all()


def test_uncut_overlapping_people_are_plain_nms():
    boxes = np.array([[0, 0, 50, 150], [30, 0, 80, 150], [1, 1, 51, 151]], np.float32)
    merged, score = merge_tiled(boxes, np.array([0.9, 0.8, 0.7]), np.zeros((3, 4), bool))
    assert len(merged) == 2 and score.tolist() == pytest.approx([0.9, 0.8])


@pytest.mark.parametrize(("roi", "message"), [
    ([[[0, 0], [10, 0]]], "at least 3"),
    ([[[0, 0], [10, 0], [20, 0]]], "zero area"),
    ([[[0, 0], [10, 10], [10, 0], [0, 10]]], "cross"),
    ([[[0, 0], ["a", 3], [5, 5]]], "point 1"),
    ([[[0, 0], [-1, 3], [5, 5]]], ">= 0"),
    ("sky", "list of polygons"),
])
def test_roi_polygons_are_validated(roi, message):
    with pytest.raises(ValueError, match=message):
        ViewOptions(roi=roi)


def _config(tmp_path, detection: str) -> Path:
    path = tmp_path / "cams.yaml"
    path.write_text("cameras:\n  - {id: gate, source: a.mp4}\n"
                    f"  - {{id: lobby, source: b.mp4, detection: {detection}}}\n")
    return path


@pytest.mark.parametrize(("detection", "message"), [
    ("{roi: [[[0, 0], [10, 10], [10, 0], [0, 10]]]}", "roi\\[0\\] edges 0 and 2 cross"),
    ("{tiles: maybe}", "tiles must be one of"),
    ("{imgsz: [500, 640]}", "multiples of 32"),
    ("{tile: auto}", "unknown key.*'tile'"),
])
def test_bad_detection_options_name_the_camera_and_the_file(tmp_path, detection, message):
    # The config keeps the mapping; a run checks it when it is built, before any model
    # loads (pipeline.assembly.camera_views, the components own their options).
    from pipeline.assembly import camera_views

    path = _config(tmp_path, detection)
    with pytest.raises(ConfigError, match=message) as caught:
        camera_views(load_config(path))
    assert "camera 'lobby'" in str(caught.value) and str(path) in str(caught.value)


def test_detection_options_load_from_the_camera_mapping(tmp_path):
    from pipeline.assembly import camera_views

    config = load_config(_config(tmp_path, "{imgsz: auto, tiles: auto, "
                                 "roi: [[[0, 300], [1920, 300], [1920, 1080]]]}"))
    assert config.cameras[0].detection is None
    views = camera_views(config)
    assert views[config.cameras[0].id] == ViewOptions()
    view = views[config.cameras[1].id]
    assert view.imgsz == "auto" and view.tiles == "auto" and len(view.roi) == 1


def test_roi_outside_the_frame_names_the_camera():
    view = ViewOptions(imgsz=None, roi=[[[0, 0], [2000, 0], [0, 50]]])
    detector = CameraDetector(base=_FakeDetector((384, 640)), make_detector=_FakeDetector,
                              views={"lobby": view}, where="site.yaml")
    with pytest.raises(ValueError, match="site.yaml: camera 'lobby'.*outside the 1920x1080 "
                                         "frame.*detection.roi"):
        detector.detect([np.zeros((1080, 1920, 3), np.uint8)], camera_ids=["lobby"])


def test_plans_change_nothing_for_cameras_seen_above_the_floor():
    for auto in (ViewOptions(), ViewOptions(imgsz="auto", tiles="auto", min_scale=0.5)):
        for size in ((960, 540), (768, 576)):  # the 4-camera sample and PETS09
            plan = plan_view(auto, size, (384, 640))
            assert plan.is_plain((384, 640)) and plan.imgsz == (384, 640)
    default = plan_view(ViewOptions(), (1920, 1080), (384, 640))
    assert default.imgsz == (704, 1248) and not len(default.tiles_xyxy)
    fixed = plan_view(ViewOptions(), (1920, 1080), (640, 640), resizable=False)
    assert fixed.is_plain((640, 640))
    auto = ViewOptions(imgsz="auto", tiles="auto", min_scale=0.5)
    plan = plan_view(auto, (1920, 1080), (384, 640))
    assert plan.imgsz == (544, 960) and plan.scale >= 0.5 and len(plan.tiles_xyxy) == 0
    tiled = plan_view(ViewOptions(imgsz=None, tiles="auto", min_scale=0.5), (1920, 1080),
                      (384, 640))
    assert tiled.imgsz == (384, 640) and len(tiled.tiles_xyxy) == 4
    capped = plan_view(ViewOptions(imgsz="auto", min_scale=1.0, max_side=1280),
                       (3840, 2160), (384, 640))
    assert max(capped.imgsz) <= 1280


def test_roi_filters_by_box_centre_and_crops_the_input():
    roi = [[[0, 300], [1920, 300], [1920, 1080], [0, 1080]]]
    plan = plan_view(ViewOptions(roi=roi), (1920, 1080), (384, 640))
    assert plan.region_xyxy.tolist() == [0, 300, 1920, 1080]
    inside = points_in_polygons(np.array([[10, 310], [10, 290], [1919, 1079]]), plan.roi)
    assert inside.tolist() == [True, False, True]


class _FakeDetector:
    """Finds one box in the middle of every image it is given; counts its calls."""

    def __init__(self, imgsz):
        self.imgsz = tuple(imgsz)
        self.calls: list[int] = []

    def detect(self, images):
        self.calls.append(len(images))
        return [Detections(xyxy=np.array([[i.shape[1] / 2 - 5, i.shape[0] / 2 - 20,
                                           i.shape[1] / 2 + 5, i.shape[0] / 2 + 20]]),
                           score=np.array([0.9])) for i in images]


def test_camera_detector_batches_each_input_size_in_one_call():
    base = _FakeDetector((384, 640))
    made: list[_FakeDetector] = []

    def make(imgsz):
        made.append(_FakeDetector(imgsz))
        return made[-1]

    detector = CameraDetector(base=base, make_detector=make, views={
        "hd1": ViewOptions(imgsz=None, tiles="auto", min_scale=0.5),
        "hd2": ViewOptions(imgsz=None, tiles="auto", min_scale=0.5),
        "big": ViewOptions(imgsz="auto", min_scale=0.5),
        "cam2": ViewOptions(imgsz="auto", tiles="auto")})  # 960x540: scale 0.67, plain
    small, hd = np.zeros((540, 960, 3), np.uint8), np.zeros((1080, 1920, 3), np.uint8)
    out = detector.detect([small, hd, hd, hd, small], ["cam1", "hd1", "hd2", "big", "cam2"])
    assert len(out) == 5 and all(isinstance(d, Detections) for d in out)
    # Plain cameras (and cam2, seen above the floor) in one call; both tiled cameras
    # (full frame + 4 tiles each) in one call.
    assert base.calls == [2, 10]
    assert [m.imgsz for m in made] == [(544, 960)] and made[0].calls == [1]
    np.testing.assert_allclose(out[0].xyxy, [[475, 250, 485, 290]])


def _matched(dets: Detections, gt: np.ndarray, min_score: float = 0.5) -> set[int]:
    keep = dets.score >= min_score
    pairs, _, _ = linear_assignment(1.0 - iou_matrix(gt, dets.xyxy[keep]), 0.5)
    return set(pairs[:, 0].tolist())


def test_tiles_find_people_the_plain_path_misses_on_a_real_1080p_frame():
    from pipeline.detection import YoloDetector

    weights = ROOT / "weights" / "yolov8n_recovered.pt"
    image = cv2.imread(str(MOT / "MOT17-04-FRCNN" / "img1" / "000001.jpg"))
    assert image.shape == (1080, 1920, 3)
    gt = np.loadtxt(MOT / "MOT17-04-FRCNN" / "gt" / "gt.txt", delimiter=",")
    gt = gt[(gt[:, 0] == 1) & (gt[:, 6] == 1) & (gt[:, 7] == 1)]
    gt_xyxy = tlwh_to_xyxy(gt[:, 2:6])
    yolo = YoloDetector(weights=weights, backend="openvino", imgsz=(384, 640), conf=0.1,
                        threads=2)
    detector = CameraDetector(base=yolo, make_detector=lambda hw: None,
                              views={"tiled": ViewOptions(imgsz=None, tiles="on", min_scale=0.5)})
    plain, tiled = detector.detect([image, image], camera_ids=["plain", "tiled"])
    found_plain, found_tiled = _matched(plain, gt_xyxy), _matched(tiled, gt_xyxy)
    only_tiled = found_tiled - found_plain
    # Measured (OpenVINO, score >= 0.5): plain 11 of 42 pedestrians, tiled 15 (4 people
    # 171-221 px tall found only when tiled, none found only by the plain path).
    assert len(found_tiled) >= len(found_plain) + 3, (len(found_plain), len(found_tiled))
    assert len(only_tiled) >= 3 and len(found_plain - found_tiled) <= 1
    # Merging leaves no duplicates: no two tiled boxes overlap at IoU >= 0.6.
    iou = iou_matrix(tiled.xyxy, tiled.xyxy)
    np.fill_diagonal(iou, 0)
    assert iou.max() < 0.6
