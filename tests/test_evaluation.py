"""MOT metrics glue (trackeval) and multi-camera identity metrics.

Hand-made sequences with values worked out in the comments, plus real ground truth:
PETS09-S2L1 (MOT15 format), MOT17-02 (classes and distractors) and WILDTRACK (7 cameras).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.mot import (
    _FIELDS,
    evaluate_mot,
    evaluate_mot_folder,
    read_mot_txt,
)
from pipeline.evaluation.mot import add_arguments as mot_add_arguments
from pipeline.evaluation.mot import main as mot_main
from pipeline.evaluation.mtmc import (
    BoxTable,
    evaluate_mtmc,
    read_trajectories_csv,
)
from pipeline.evaluation.mtmc import add_arguments as mtmc_add_arguments
from pipeline.evaluation.mtmc import main as mtmc_main
from tests.conftest import DATA

PETS_GT = DATA / "video" / "pets09_s2l1" / "gt" / "gt.txt"
MOT17_02 = DATA / "mot" / "MOT17-train" / "MOT17-02-FRCNN"
WILDTRACK = DATA / "mtmc" / "wildtrack" / "annotations_positions"

needs = pytest.mark.skipif


def _rows(boxes: dict[int, tuple[float, float]], frames, conf=1.0) -> list[list[float]]:
    """MOT rows for ids at fixed positions: {id: (left, top)}, 20x40 boxes."""
    return [[f, i, x, y, 20, 40, conf, -1, -1, -1] for f in frames for i, (x, y) in boxes.items()]


FRAMES = range(1, 11)
TWO = {1: (0.0, 0.0), 2: (100.0, 0.0)}  # two people far apart: 2 x 10 = 20 gt boxes


# ---------------------------------------------------------------------------- MOT (trackeval)
def test_perfect_tracking_scores_one():
    gt = np.array(_rows(TWO, FRAMES))
    pred = gt.copy()
    pred[:, 1] += 40  # ids are arbitrary labels
    r = evaluate_mot(gt, pred)
    for key in ("HOTA", "DetA", "AssA", "IDF1", "IDP", "IDR", "MOTA", "MOTP"):
        assert r[key] == pytest.approx(1.0), key
    assert (r["IDSW"], r["FP"], r["FN"], r["GT_Dets"], r["GT_IDs"]) == (0, 0, 0, 20, 2)


def test_identity_swap_halfway():
    # Predicted ids 10 (on person 1) and 20 (on person 2) in frames 1-5, exchanged in 6-10.
    # CLEAR: both gt tracks change their matched id once -> IDSW = 2; no FP/FN;
    #   MOTA = 1 - (0 + 0 + 2) / 20 = 0.9.
    # Identity: overlap matrix [[5, 5], [5, 5]] -> IDTP = 10 of 20 gt and 20 predicted boxes;
    #   IDF1 = IDP = IDR = 10 / 20 = 0.5.
    # HOTA: DetA = 1; every TP has TPA = 5, FNA = 5, FPA = 5 -> A = 5/15, AssA = 1/3,
    #   HOTA = sqrt(1 * 1/3) = 0.5774.
    gt = np.array(_rows(TWO, FRAMES))
    pred = gt.copy()
    first = pred[:, 0] <= 5
    pred[:, 1] = np.where(first, pred[:, 1] * 10, (3 - pred[:, 1]) * 10)
    r = evaluate_mot(gt, pred)
    assert r["IDSW"] == 2
    assert r["MOTA"] == pytest.approx(0.9)
    assert r["IDF1"] == pytest.approx(0.5) and r["IDP"] == pytest.approx(0.5)
    assert r["DetA"] == pytest.approx(1.0)
    assert r["AssA"] == pytest.approx(1 / 3)
    assert r["HOTA"] == pytest.approx(np.sqrt(1 / 3))


def test_missed_detections_and_a_false_positive():
    # Drop person 1 in frames 2, 3 and person 2 in frame 7 (FN = 3) and add one box far
    # away (FP = 1): MOTA = 1 - (3 + 1 + 0) / 20 = 0.8.
    # IDTP = 17 of 20 gt and 18 predicted boxes: IDF1 = 2 * 17 / 38 = 0.8947; IDR = 0.85.
    gt = np.array(_rows(TWO, FRAMES))
    drop = ((gt[:, 1] == 1) & np.isin(gt[:, 0], [2, 3])) | ((gt[:, 1] == 2) & (gt[:, 0] == 7))
    pred = np.concatenate([gt[~drop], [[4, 9, 400, 300, 20, 40, 1, -1, -1, -1]]])
    r = evaluate_mot(gt, pred)
    assert (r["FN"], r["FP"], r["IDSW"]) == (3, 1, 0)
    assert r["MOTA"] == pytest.approx(0.8)
    assert r["IDF1"] == pytest.approx(34 / 38)
    assert r["IDR"] == pytest.approx(0.85)


def test_distractors_and_zero_marked_gt_are_ignored():
    # MOT17 gt: class 1 conf 1 = pedestrians (ids 1, 2). Id 3: static person (class 7, a
    # distractor): predicting it is neither TP nor FP. Id 4: pedestrian with conf 0
    # (ignored): missing it is no FN, but predicting it IS an FP (trackeval only drops
    # predictions matched to distractor *classes*). Id 5: class 4 (not a distractor, not a
    # pedestrian): predicting it is an FP.
    def gt_rows(i, x, conf, cls):
        return [[f, i, x, 0, 20, 40, conf, cls, 1.0] for f in FRAMES]

    gt = np.array(gt_rows(1, 0, 1, 1) + gt_rows(2, 100, 1, 1) + gt_rows(3, 200, 0, 7)
                  + gt_rows(4, 300, 0, 1) + gt_rows(5, 400, 0, 4))
    peds = gt[:20]
    assert evaluate_mot(gt, peds)["MOTA"] == pytest.approx(1.0)
    with_static = evaluate_mot(gt, np.concatenate([peds, gt[20:30]]))
    assert (with_static["FP"], with_static["MOTA"], with_static["Dets"]) == (0, 1.0, 20)
    r = evaluate_mot(gt, np.concatenate([peds, gt[30:40], gt[40:50]]))
    assert (r["FP"], r["FN"], r["GT_Dets"]) == (20, 0, 20)
    assert r["MOTA"] == pytest.approx(0.0)
    # The same file read as MOT15 (no classes): only the conf flag counts, so the static
    # person is an ordinary FP.
    assert evaluate_mot(gt, np.concatenate([peds, gt[20:30]]), gt_format="mot15")["FP"] == 10


def test_bad_input_raises_clear_errors(tmp_path):
    gt = np.array(_rows(TWO, FRAMES))
    dup = np.concatenate([gt, gt[:1]])
    with pytest.raises(ValueError, match="repeat id"):
        evaluate_mot(gt, dup)
    with pytest.raises(ValueError, match="mot17"):
        evaluate_mot(gt, gt, gt_format="kitti")
    with pytest.raises(FileNotFoundError):
        evaluate_mot(tmp_path / "missing.txt", gt)
    empty = evaluate_mot(gt, np.zeros((0, 10)))
    assert (empty["FN"], empty["MOTA"], empty["HOTA"]) == (20, 0.0, 0.0)


@needs(not PETS_GT.is_file(), reason="PETS09-S2L1 gt missing")
def test_pets09_gt_against_itself_and_with_dropped_rows():
    gt = read_mot_txt(PETS_GT)
    valid = gt[gt[:, 6] != 0]  # 174 rows are conf-0 (ignored) gt
    assert len(gt) == 4650 and len(valid) == 4476
    r = evaluate_mot(PETS_GT, valid)
    for key in ("HOTA", "IDF1", "MOTA", "MOTP"):
        assert r[key] == pytest.approx(1.0), key
    assert (r["GT_IDs"], r["IDSW"]) == (19, 0)
    # The raw file as a "tracker": its ignored rows are not truth, so they are FPs.
    assert evaluate_mot(PETS_GT, PETS_GT)["FP"] == 174
    # 10% of the valid rows dropped (seeded): FN = 448, MOTA = 1 - 448/4476 = 0.89991,
    # IDF1 = 2 * 4028 / (4476 + 4028) = 0.94732, HOTA ~ sqrt(DetA 0.900 * AssA 0.9005).
    rng = np.random.default_rng(0)
    keep = np.ones(len(valid), bool)
    keep[rng.choice(len(valid), round(0.1 * len(valid)), replace=False)] = False
    r = evaluate_mot(PETS_GT, valid[keep])
    assert (r["FN"], r["FP"], r["IDSW"]) == (448, 0, 0)
    assert r["MOTA"] == pytest.approx(1 - 448 / 4476)
    assert r["IDF1"] == pytest.approx(2 * 4028 / (4476 + 4028))
    assert r["HOTA"] == pytest.approx(0.9002, abs=1e-3)


@needs(not (MOT17_02 / "gt" / "gt.txt").is_file(), reason="MOT17-02 gt missing")
def test_mot17_gt_as_tracker_only_non_distractor_classes_are_false_positives():
    gt_file = MOT17_02 / "gt" / "gt.txt"
    gt = read_mot_txt(gt_file)
    r = evaluate_mot(gt_file, gt_file)
    peds = np.sum((gt[:, 7] == 1) & (gt[:, 6] != 0))
    # Classes 2/7/8 (person on vehicle, static person, distractor) are dropped; the rest of
    # the non-pedestrian rows (here classes 4 and 9: 1559 + 1843) are FPs.
    assert r["FP"] == np.sum(np.isin(gt[:, 7], [4, 9])) == 3402
    assert (r["TP"], r["FN"], r["IDSW"], r["GT_Dets"]) == (peds, 0, 0, 18581)


def _noisy_tracker(gt: np.ndarray, seed: int) -> np.ndarray:
    """Jittered, thinned gt with an id permutation halfway and shifted false positives."""
    rng = np.random.default_rng(seed)
    p = gt[rng.random(len(gt)) > 0.15].copy()
    p[:, 2:4] += rng.normal(0, 0.08, (len(p), 2)) * p[:, 4:6]
    ids = np.unique(p[:, 1])
    perm = dict(zip(ids, rng.permutation(ids), strict=True))
    late = p[:, 0] > np.median(p[:, 0])
    p[late, 1] = [perm[i] for i in p[late, 1]]
    fp = p[rng.choice(len(p), len(p) // 10, replace=False)].copy()
    fp[:, 2] += 300
    fp[:, 1] += 10000
    p = np.concatenate([p, fp])[:, :7]
    p[:, 6] = 1
    return np.hstack([p, -np.ones((len(p), 3))])


def _official_trackeval(tmp: Path, gt_file: Path, pred: np.ndarray, bench: str, seqlen: int,
                        name: str) -> dict[str, float]:
    """trackeval's own MotChallenge2DBox pipeline on a temporary MOTChallenge folder tree."""
    import trackeval

    (tmp / "gt" / name / "gt").mkdir(parents=True)
    shutil.copy(gt_file, tmp / "gt" / name / "gt" / "gt.txt")
    (tmp / "gt" / name / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nseqLength={seqlen}\n")
    (tmp / "tr" / "T" / "data").mkdir(parents=True)
    np.savetxt(tmp / "tr" / "T" / "data" / f"{name}.txt", pred,
               fmt="%d,%d,%.3f,%.3f,%.3f,%.3f,%g,%d,%d,%d")
    dataset = trackeval.datasets.MotChallenge2DBox(dict(
        GT_FOLDER=str(tmp / "gt"), TRACKERS_FOLDER=str(tmp / "tr"), SEQ_INFO={name: seqlen},
        BENCHMARK=bench, SKIP_SPLIT_FOL=True, TRACKERS_TO_EVAL=["T"], PRINT_CONFIG=False))
    evaluator = trackeval.Evaluator(dict(
        PRINT_RESULTS=False, PRINT_CONFIG=False, OUTPUT_SUMMARY=False, OUTPUT_DETAILED=False,
        PLOT_CURVES=False, USE_PARALLEL=False, TIME_PROGRESS=False))
    no_print = {"PRINT_CONFIG": False}
    with contextlib.redirect_stdout(io.StringIO()):
        res, _ = evaluator.evaluate([dataset], [
            trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(dict(no_print)),
            trackeval.metrics.Identity(dict(no_print))])
    r = res["MotChallenge2DBox"]["T"][name]["pedestrian"]
    return {k: float(np.mean(r[m][f])) for k, (m, f) in _FIELDS.items()}


@needs(not (PETS_GT.is_file() and (MOT17_02 / "gt" / "gt.txt").is_file()),
       reason="PETS09/MOT17 gt missing")
@pytest.mark.parametrize("gt_file,bench,seqlen", [
    (PETS_GT, "MOT15", 795), (MOT17_02 / "gt" / "gt.txt", "MOT17", 600)])
def test_identical_to_trackeval_motchallenge_dataset(tmp_path, gt_file, bench, seqlen):
    # Our in-memory preprocessing must give exactly what trackeval's own dataset class
    # gives on files (PETS09: MOT15 rules; MOT17-02: distractor classes), every field.
    pred = _noisy_tracker(read_mot_txt(gt_file), seed=1)
    ref = _official_trackeval(tmp_path, gt_file, pred, bench, seqlen, "SEQ")
    mine = evaluate_mot(gt_file, tmp_path / "tr" / "T" / "data" / "SEQ.txt", num_frames=seqlen)
    assert mine == pytest.approx(ref, rel=1e-12, abs=1e-12)
    assert mine["IDSW"] > 0 and 0.3 < mine["IDF1"] < 0.8  # the noise really bites


def test_folder_layout_and_cli(tmp_path, capsys):
    gt_root, pred_root = tmp_path / "gt", tmp_path / "pred"
    gt = np.array(_rows(TWO, FRAMES))
    swapped = gt.copy()
    swapped[:, 1] = np.where(swapped[:, 0] <= 5, swapped[:, 1], 3 - swapped[:, 1])
    for seq, pred in (("A", gt), ("B", swapped)):
        (gt_root / seq / "gt").mkdir(parents=True)
        np.savetxt(gt_root / seq / "gt" / "gt.txt", gt, fmt="%g", delimiter=",")
        (gt_root / seq / "seqinfo.ini").write_text("[Sequence]\nseqLength=10\n")
        pred_root.mkdir(exist_ok=True)
        np.savetxt(pred_root / f"{seq}.txt", pred, fmt="%g", delimiter=",")
    res = evaluate_mot_folder(gt_root, pred_root)
    assert list(res) == ["A", "B", "COMBINED"]
    assert res["A"]["IDF1"] == 1.0 and res["B"]["IDF1"] == pytest.approx(0.5)
    # Combined: IDTP 20 + 10 of 40 gt and 40 predicted boxes -> 0.75; IDSW 0 + 2;
    # MOTA = 1 - 2/40.
    assert res["COMBINED"]["IDF1"] == pytest.approx(0.75)
    assert res["COMBINED"]["IDSW"] == 2 and res["COMBINED"]["MOTA"] == pytest.approx(0.95)

    parser = argparse.ArgumentParser()
    mot_add_arguments(parser)
    assert mot_main(parser.parse_args(["--gt", str(gt_root), "--pred", str(pred_root),
                                       "--json"])) == 0
    assert json.loads(capsys.readouterr().out)["COMBINED"]["IDF1"] == pytest.approx(0.75)
    # A single sequence folder with a single prediction file; table output.
    assert mot_main(parser.parse_args(["--gt", str(gt_root / "B"),
                                       "--pred", str(pred_root / "B.txt")])) == 0
    out = capsys.readouterr().out
    assert "IDF1" in out.splitlines()[0] and out.splitlines()[1].startswith("B ")
    with pytest.raises(FileNotFoundError, match="no predictions for sequence B"):
        (pred_root / "B.txt").unlink()
        evaluate_mot_folder(gt_root, pred_root)


# ---------------------------------------------------------------------------- MTMC
def _person(camera: str, frames, pid, x=0.0) -> list[tuple]:
    return [(camera, f, pid, x, 0.0, x + 20.0, 40.0) for f in frames]


def test_mtmc_one_person_two_cameras():
    # One person: camera A frames 0-9, camera B frames 10-19 (10 + 10 gt boxes).
    gt = BoxTable.from_rows(_person("A", range(10), 1) + _person("B", range(10, 20), 1))
    # Two global ids (one per camera): only one id can be matched to the person ->
    # IDTP = 10, IDF1 = 2 * 10 / (20 + 20) = 0.5; each camera alone is perfect.
    split = evaluate_mtmc(gt, BoxTable.from_rows(
        _person("A", range(10), 7) + _person("B", range(10, 20), 8)))
    assert split.overall["IDF1"] == pytest.approx(0.5)
    assert (split.overall["IDTP"], split.overall["IDFP"], split.overall["IDFN"]) == (10, 10, 10)
    assert {c: r["IDF1"] for c, r in split.per_camera.items()} == {"A": 1.0, "B": 1.0}
    # One global id across both cameras: 1.0.
    joint = evaluate_mtmc(gt, BoxTable.from_rows(
        _person("A", range(10), 7) + _person("B", range(10, 20), 7)))
    assert joint.overall["IDF1"] == 1.0
    # Unequal halves (6 frames in A, 4 in B) with two ids: the longer one wins,
    # IDTP = 6 -> IDF1 = 12 / 20 = 0.6, IDR = 0.6.
    gt2 = BoxTable.from_rows(_person("A", range(6), 1) + _person("B", range(6, 10), 1))
    r = evaluate_mtmc(gt2, BoxTable.from_rows(_person("A", range(6), 7)
                                              + _person("B", range(6, 10), 8))).overall
    assert (r["IDF1"], r["IDR"]) == (pytest.approx(0.6), pytest.approx(0.6))


def test_mtmc_matching_is_global_and_uses_iou():
    # Two people, both in A and B at the same frames; the prediction gives person 1 id 7
    # in A but id 8 in B, and person 2 id 8 in A and 7 in B (a cross-camera swap).
    # Per camera everything is perfect; jointly overlap = [[5, 5], [5, 5]] -> IDF1 0.5.
    gt = BoxTable.from_rows(_person("A", range(5), 1) + _person("A", range(5), 2, x=100)
                            + _person("B", range(5), 1) + _person("B", range(5), 2, x=100))
    pred = BoxTable.from_rows(_person("A", range(5), 7) + _person("A", range(5), 8, x=100)
                              + _person("B", range(5), 8) + _person("B", range(5), 7, x=100))
    res = evaluate_mtmc(gt, pred)
    assert res.overall["IDF1"] == pytest.approx(0.5)
    assert all(r["IDF1"] == 1.0 for r in res.per_camera.values())
    # A box shifted by 10 of 20 px has IoU 1/3 < 0.5: no TP, only with threshold 0.3.
    shifted = BoxTable.from_rows(_person("A", range(5), 7, x=10))
    one = BoxTable.from_rows(_person("A", range(5), 1))
    assert evaluate_mtmc(one, shifted).overall["IDTP"] == 0
    assert evaluate_mtmc(one, shifted, iou_threshold=0.3).overall["IDF1"] == 1.0
    with pytest.raises(ValueError, match="more than one box"):
        evaluate_mtmc(BoxTable.from_rows(_person("A", [0, 0], 1)), one)


def test_mtmc_csv_files_and_cli(tmp_path, capsys):
    gt_csv, pred_csv = tmp_path / "gt.csv", tmp_path / "trajectories.csv"
    gt_csv.write_text("camera,frame,id,x1,y1,x2,y2\n" + "".join(
        f"{c},{f},1,0,0,20,40\n" for c, fr in (("cam1", range(4)), ("cam2", range(4, 8)))
        for f in fr))
    # global_id -1 (never associated) -> each local track is its own identity, so the two
    # unassociated tracks score like two different global ids: IDF1 = 0.5.
    header = "camera,frame,timestamp_s,global_id,track_id,x1,y1,x2,y2,score\n"
    pred_csv.write_text(header + "".join(
        f"{c},{f},{f / 10},-1,1,0,0,20,40,0.9\n" for c, fr in (("cam1", range(4)),
                                                              ("cam2", range(4, 8)))
        for f in fr))
    table = read_trajectories_csv(pred_csv)
    assert sorted(set(table.identity)) == ["cam1/1", "cam2/1"]
    parser = argparse.ArgumentParser()
    mtmc_add_arguments(parser)
    assert mtmc_main(parser.parse_args(["--gt", str(gt_csv), "--pred", str(pred_csv),
                                        "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["overall"]["IDF1"] == pytest.approx(0.5)
    assert out["per_camera"]["cam2"]["IDF1"] == 1.0
    assert mtmc_main(parser.parse_args(["--gt", str(gt_csv), "--pred", str(pred_csv)])) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("ALL (joint)")
    bad = tmp_path / "bad.csv"
    bad.write_text("cam,frame,id\n")
    with pytest.raises(ValueError, match="missing column"):
        evaluate_mtmc(bad, pred_csv)


def _wildtrack(n_files: int) -> BoxTable:
    rows = []
    for path in sorted(WILDTRACK.glob("*.json"))[:n_files]:
        frame = int(path.stem)
        for person in json.loads(path.read_text()):
            for v in person["views"]:
                if v["xmax"] > v["xmin"] >= 0 and v["ymax"] > v["ymin"] >= 0:
                    rows.append((f"C{v['viewNum'] + 1}", frame, person["personID"],
                                 v["xmin"], v["ymin"], v["xmax"], v["ymax"]))
    return BoxTable.from_rows(rows)


@needs(not WILDTRACK.is_dir(), reason="WILDTRACK annotations missing")
def test_mtmc_on_wildtrack_matches_trackeval_identity():
    from trackeval.metrics import Identity

    from pipeline.geometry import iou_matrix

    gt = _wildtrack(60)
    assert len(np.unique(gt.camera)) == 7 and len(gt) == 4632
    assert evaluate_mtmc(gt, gt).overall["IDF1"] == 1.0
    # Prediction: jittered, 10% dropped, and no cross-camera association (ids per camera).
    rng = np.random.default_rng(3)
    keep = rng.random(len(gt)) > 0.1
    wh = gt.xyxy[:, 2:] - gt.xyxy[:, :2]
    xyxy = gt.xyxy + rng.normal(0, 0.05, (len(gt), 4)) * np.hstack([wh, wh])
    local = np.char.add(np.char.add(gt.camera, "/"), gt.identity)
    pred = BoxTable(gt.camera[keep], gt.frame[keep], local[keep], xyxy[keep])
    res = evaluate_mtmc(gt, pred)

    # Reference: trackeval's Identity metric with one timestep per (camera, frame), which
    # is exactly the joint MTMC definition.
    g_lab = np.unique(gt.identity, return_inverse=True)[1].reshape(-1)
    p_lab = np.unique(pred.identity, return_inverse=True)[1].reshape(-1)
    data = {"gt_ids": [], "tracker_ids": [], "similarity_scores": [], "num_gt_dets": len(gt),
            "num_tracker_dets": len(pred), "num_gt_ids": g_lab.max() + 1,
            "num_tracker_ids": p_lab.max() + 1}
    for cam, frame in sorted(set(zip(gt.camera.tolist(), gt.frame.tolist(), strict=True))):
        gm = (gt.camera == cam) & (gt.frame == frame)
        pm = (pred.camera == cam) & (pred.frame == frame)
        data["gt_ids"].append(g_lab[gm])
        data["tracker_ids"].append(p_lab[pm])
        data["similarity_scores"].append(iou_matrix(gt.xyxy[gm], pred.xyxy[pm]))
    ref = Identity({"PRINT_CONFIG": False}).eval_sequence(data)
    assert res.overall["IDTP"] == ref["IDTP"]
    assert res.overall["IDF1"] == pytest.approx(ref["IDF1"])
    # Per camera the local ids are right; jointly each person counts in one camera only.
    per_cam = [r["IDF1"] for r in res.per_camera.values()]
    assert min(per_cam) > 0.85
    assert res.overall["IDF1"] < 0.5 < min(per_cam)
