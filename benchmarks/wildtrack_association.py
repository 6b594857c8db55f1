"""Cross-camera association on WILDTRACK geometry with appearance from real CUHK01 images.

Usage (from the repository root, ``../shared`` beside it):
    nice -n 10 python3 -m benchmarks.wildtrack_association --seed 0 --json runs/wildtrack.json

Protocol (docs/MTMC_ASSOCIATION.md):

1. The real WILDTRACK boxes and cross-camera identities of the first ``--frames``
   annotated frames (2 fps) of the 7 overlapping views.
2. Tracker-like tracks from them (``benchmarks.lib.wildtrack.synthesize_tracks``):
   cut at gaps longer than 1 s, random breaks, missed observations, jittered boxes,
   seeded; replayed through the pipeline's ``TrackletBuilder`` (tracklets shorter than
   2 observations dropped, quality-weighted pooling of the best 10 embeddings).
3. Appearance: every WILDTRACK person gets a CUHK01 test identity (0486-0971, never
   used in re-id training; seeded, without repetition). In each tracklet ``--crops``
   observations are embedded; each crop is one of that identity's camera-1 images for
   views C1-C4 (CVLab) or camera-2 images for C5-C7 (IDIAP), cut like the detection box
   is cut by the image border, then misaligned like a detector box (centre shift and
   size change up to +-``--misalign`` of the box, seeded). Every model embeds the same
   crops: our HA-CNN (PyTorch bf16) and the peer OSNet-x0.25 MSMT17 (ONNX Runtime).
4. ``OfflineAssociator`` at the shipped threshold (``configs/sample.yaml``) and a
   threshold sweep, with and without the ground-plane cue as runs get it
   (``FloorCue`` over ``pipeline.calibration``: box foot points projected with the
   dataset's calibration files;
   "gate": tracklets seen at the same moments more than ``--gate`` m apart on average
   cannot be one person; "+ blend": their distance is also blended with the ground
   distance, ``--ground-weight``).
5. ``pipeline.evaluation.mtmc.evaluate_mtmc``: MTMC IDF1/IDP/IDR over all 7 cameras
   jointly, and per camera, against every visible gt box of those frames (IoU 0.5).

Reference rows: "no association" (each tracklet its own identity: the floor), "oracle
appearance" (one-hot identity vectors in the same embedded rows: the ceiling that the
fragmentation leaves), and "no appearance + ground" (geometry alone).

Prints a markdown table and writes JSON (all rows, per-camera IDF1, the sweep, the
settings). With several ``--seeds`` every figure is the median over seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from benchmarks.lib import wildtrack as wt
from pipeline.association import FloorCue, OfflineAssociator
from pipeline.calibration import FloorPositions, GroundCalibration
from pipeline.evaluation.mtmc import BoxTable, evaluate_mtmc
from pipeline.reid.datasets import read_cuhk_folder
from pipeline.reid.evaluate import misalign_crop
from pipeline.tracking import TrackletBuilder
from pipeline.types import Tracklet

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]

DATA = REPO.parent / "shared" / "data"
WILDTRACK = DATA / "mtmc" / "wildtrack"
CUHK01 = DATA / "reid" / "cuhk01"
TEST_IDS = range(486, 972)
SHIPPED_THRESHOLD = float(__import__("yaml").safe_load(
    (REPO / "configs" / "sample.yaml").read_text())["association"]["threshold"])
MIN_LENGTH_S = 1.0  # 2 observations at the 2 fps annotation rate
OBSERVATIONS_PER_S = 2.0  # WILDTRACK annotation rate
MAX_EMBEDDINGS = 10

Embeddings = dict[tuple[str, int], np.ndarray]


# -- appearance -----------------------------------------------------------------------------
def make_crops(tracks: Sequence[wt.SyntheticTrack], identity: dict[int, int], *,
               per_track: int, misalign: float, seed: int
               ) -> tuple[list[np.ndarray], list[tuple[tuple[str, int], int]]]:
    """Detector-like CUHK01 crops for ``per_track`` random observations of each track.

    Returns:
        (BGR crops, [(track key, row in track)] of each crop).
    """
    images: dict[tuple[int, int], list[Path]] = {}
    for path, pid, cam in read_cuhk_folder(CUHK01):
        images.setdefault((pid, cam), []).append(path)
    cache: dict[Path, np.ndarray] = {}
    rng = np.random.default_rng(seed + 1_000_003)
    crops, where = [], []
    for t in tracks:
        rows = np.sort(rng.choice(len(t.frames), min(per_track, len(t.frames)), replace=False))
        reid_cam = 1 if wt.CAMERAS.index(t.camera_id) < 4 else 2
        choices = images.get((identity[t.person_id], reid_cam))
        if not choices:
            raise FileNotFoundError(f"{CUHK01}: no camera-{reid_cam} image of CUHK01 id "
                                    f"{identity[t.person_id]:04d}")
        for r in rows.tolist():
            path = choices[int(rng.integers(len(choices)))]
            if path not in cache:
                image = cv2.imread(str(path))
                if image is None:
                    raise ValueError(f"unreadable image {path}")
                cache[path] = image
            cut = wt.truncate_like_box(cache[path], t.full_xyxy[r], t.xyxy[r])
            crops.append(misalign_crop(cut, misalign, rng) if misalign > 0 else cut.copy())
            where.append((t.key, r))
    return crops, where


def spread(tracks: Sequence[wt.SyntheticTrack], where: Sequence[tuple[tuple[str, int], int]],
           vectors: np.ndarray) -> Embeddings:
    """Per track (M, D) rows: the crop embeddings in their rows, zeros elsewhere."""
    out = {t.key: np.zeros((len(t.frames), vectors.shape[1]), np.float32) for t in tracks}
    for (key, row), vec in zip(where, vectors, strict=True):
        out[key][row] = vec
    return out


def oracle_vectors(tracks: Sequence[wt.SyntheticTrack],
                   where: Sequence[tuple[tuple[str, int], int]]) -> np.ndarray:
    """One-hot person vectors for the same crops (perfect appearance)."""
    person = {t.key: t.person_id for t in tracks}
    index = {p: i for i, p in enumerate(sorted(set(person.values())))}
    out = np.zeros((len(where), len(index)), np.float32)
    for k, (key, _) in enumerate(where):
        out[k, index[person[key]]] = 1.0
    return out


def build_tracklets(tracks: Sequence[wt.SyntheticTrack], emb: Embeddings | None
                    ) -> list[Tracklet]:
    """Replay the tracks through one ``TrackletBuilder`` per camera, as the runner does."""
    builders = {c: TrackletBuilder(camera_id=c, max_embeddings=MAX_EMBEDDINGS,
                                   min_length_s=MIN_LENGTH_S, fps=OBSERVATIONS_PER_S,
                                   finish_after_s=1e9)
                for c in wt.CAMERAS}
    for cam, frame, ts, tracks_now, boxes in wt.tracker_frames(tracks, emb):
        builders[cam].update(frame, ts, tracks_now, boxes, wt.IMAGE_WH)
    return [t for c in wt.CAMERAS for t in builders[c].finish()]


def distinct_vectors(tracklets: Sequence[Tracklet]) -> list[Tracklet]:
    """Copies whose embeddings are mutually orthogonal: appearance says 'all different'."""
    n = len(tracklets)
    return [Tracklet(camera_id=t.camera_id, track_id=t.track_id, frames=t.frames,
                     timestamps_s=t.timestamps_s, xyxy=t.xyxy,
                     embedding=np.eye(1, n, i, dtype=np.float32)[0], quality=1.0)
            for i, t in enumerate(tracklets)]


# -- one seed -------------------------------------------------------------------------------
def score(gt: BoxTable, tracklets: Sequence[Tracklet], identities) -> dict:
    res = evaluate_mtmc(gt, wt.prediction_table(tracklets, identities))
    o = res.overall
    return {"IDF1": o["IDF1"], "IDP": o["IDP"], "IDR": o["IDR"], "IDs": o["IDs"],
            "GT_IDs": o["GT_IDs"],
            "per_camera_IDF1": {c: v["IDF1"] for c, v in res.per_camera.items()}}


def pair_acceptance(tracklets: Sequence[Tracklet], person: dict[tuple[str, int], int],
                    threshold: float) -> dict[str, dict[str, float]]:
    """Cross-camera tracklet pairs with distance <= threshold: share of same / different.

    Split into pairs inside one camera group (C1-C4 or C5-C7: crops from the same CUHK01
    camera) and pairs across the groups (CUHK01 camera 1 vs camera 2).
    """
    e = np.stack([t.embedding for t in tracklets])
    d = 1.0 - e @ e.T
    cams = np.array([t.camera_id for t in tracklets])
    group = np.array([wt.CAMERAS.index(c) >= 4 for c in cams])
    pid = np.array([person[t.key] for t in tracklets])
    cross = cams[:, None] != cams[None, :]
    same_group = group[:, None] == group[None, :]
    out = {}
    for part, mask in (("all", cross), ("within group", cross & same_group),
                       ("across groups", cross & ~same_group)):
        same = mask & (pid[:, None] == pid[None, :])
        diff = mask & (pid[:, None] != pid[None, :])
        out[part] = {"same_accepted": float((d[same] <= threshold).mean()),
                     "different_accepted": float((d[diff] <= threshold).mean()),
                     "same_median_distance": float(np.median(d[same])),
                     "different_median_distance": float(np.median(d[diff]))}
    return out


def run_seed(args: argparse.Namespace, seed: int,
             embedders: dict[str, Callable[[list[np.ndarray]], np.ndarray]],
             log: Callable[[str], None]) -> dict:
    ann = wt.load_annotations(WILDTRACK / "annotations_positions", max_frames=args.frames)
    positions = floor_positions()
    gt = wt.gt_table(ann)
    tracks = wt.synthesize_tracks(ann, wt.FragmentConfig(jitter=args.jitter), seed=seed)
    identity = wt.assign_identities(ann.person_ids, TEST_IDS, seed=seed)
    crops, where = make_crops(tracks, identity, per_track=args.crops,
                              misalign=args.misalign, seed=seed)
    person = {t.key: t.person_id for t in tracks}
    log(f"seed {seed}: {len(ann)} gt boxes, {len(ann.person_ids)} persons, "
        f"{len(tracks)} tracks, {len(crops)} crops")

    appearance: dict[str, list[Tracklet]] = {
        "oracle": build_tracklets(tracks, spread(tracks, where, oracle_vectors(tracks, where)))}
    embed_s = {}
    for name, embed in embedders.items():
        start = time.perf_counter()
        vectors = embed(crops)
        embed_s[name] = time.perf_counter() - start
        appearance[name] = build_tracklets(tracks, spread(tracks, where, vectors))
        log(f"  {name}: {len(crops)} crops in {embed_s[name]:.1f} s")
    base = appearance["oracle"]
    appearance["none"] = distinct_vectors(base)
    cues = {
        "": None,
        " + ground gate": FloorCue(positions=positions, gate_m=args.gate, weight=0.0),
        " + ground gate + blend": FloorCue(positions=positions, gate_m=args.gate,
                                           weight=args.ground_weight),
    }
    # Geometry alone: every appearance distance is 1, pairs seen together get the ground's.
    geometry_only = FloorCue(positions=positions, gate_m=args.gate, weight=1.0)

    def assoc(kind: str, threshold: float, cue: FloorCue | None) -> dict:
        tl = appearance[kind]
        start = time.perf_counter()
        ids = OfflineAssociator.from_params(threshold=threshold).associate(
            tl, terms=[cue] if cue else [])
        out = score(gt, tl, ids)
        out["associate_s"] = time.perf_counter() - start
        return out

    rows: dict[str, dict] = {"no association (floor)": score(gt, base, [])}
    rows["oracle appearance (ceiling)"] = assoc("oracle", SHIPPED_THRESHOLD, None)
    rows["oracle appearance + ground gate"] = assoc("oracle", SHIPPED_THRESHOLD,
                                                    cues[" + ground gate"])
    rows["no appearance + ground only (blend weight 1)"] = assoc("none", SHIPPED_THRESHOLD,
                                                                 geometry_only)
    sweep: dict[str, dict[str, float]] = {}
    for name in embedders:
        for suffix, cue in cues.items():
            label = name + suffix
            rows[label] = assoc(name, SHIPPED_THRESHOLD, cue)
            sweep[label] = {f"{thr:.2f}": (rows[label]["IDF1"] if abs(thr - SHIPPED_THRESHOLD)
                                           < 1e-9 else assoc(name, thr, cue)["IDF1"])
                            for thr in args.thresholds}
            log(f"  {label}: IDF1 {100 * rows[label]['IDF1']:.1f} at {SHIPPED_THRESHOLD}")
    pairs = {name: pair_acceptance(appearance[name], person, SHIPPED_THRESHOLD)
             for name in embedders}
    return {"rows": rows, "sweep": sweep, "pairs": pairs, "embed_s": embed_s,
            "counts": {"gt_boxes": len(gt), "persons": int(len(ann.person_ids)),
                       "tracks": len(tracks), "tracklets": len(base), "crops": len(crops),
                       "frames": int(len(ann.frames))}}


def floor_positions() -> FloorPositions:
    """The 7 views' calibrations as a run config gives them (``pipeline.calibration``:
    OpenCV XML files, translation in centimetres), checked against 1920x1080 images."""
    root = WILDTRACK / "calibrations"
    positions = FloorPositions({cam: GroundCalibration.from_opencv(
        cam, root / "intrinsic_zero" / f"intr_{name}.xml",
        root / "extrinsic" / f"extr_{name}.xml", unit="cm")
        for cam, name in zip(wt.CAMERAS, wt.CALIBRATION_NAMES, strict=True)})
    for cam in wt.CAMERAS:
        positions.check(cam, wt.IMAGE_WH)
    return positions


# -- aggregation and output -----------------------------------------------------------------
def median_over(results: list[dict], path: Callable[[dict], float]) -> float:
    return float(np.median([path(r) for r in results]))


def summarise(results: list[dict]) -> dict:
    first = results[0]
    rows = {}
    for label in first["rows"]:
        row = {k: median_over(results, lambda r, k=k, a=label: r["rows"][a][k])
               for k in ("IDF1", "IDP", "IDR", "IDs", "GT_IDs")}
        row["per_camera_IDF1"] = {
            c: median_over(results, lambda r, c=c, a=label: r["rows"][a]["per_camera_IDF1"][c])
            for c in first["rows"][label]["per_camera_IDF1"]}
        row["per_seed_IDF1"] = [r["rows"][label]["IDF1"] for r in results]
        rows[label] = row
    sweep = {label: {thr: median_over(results, lambda r, a=label, t=thr: r["sweep"][a][t])
                     for thr in first["sweep"][label]} for label in first["sweep"]}
    pairs = {name: {part: {k: median_over(results, lambda r, n=name, p=part, k=k:
                                          r["pairs"][n][p][k])
                           for k in first["pairs"][name][part]}
                    for part in first["pairs"][name]} for name in first["pairs"]}
    return {"rows": rows, "sweep": sweep, "pairs": pairs}


def markdown(summary: dict, names: dict[str, str]) -> str:
    def label(key: str) -> str:
        # the longest model name the row key starts with ("osnet+rga-sc + ground gate"
        # must not read as "osnet" followed by "+rga-sc")
        for short in sorted(names, key=len, reverse=True):
            if key == short or key.startswith(short + " "):
                return names[short] + key[len(short):]
        return key

    lines = [f"| association input (threshold {SHIPPED_THRESHOLD:.2f}) | MTMC IDF1 | IDP | IDR "
             "| global ids / gt ids | mean per-camera IDF1 |", "|---|---|---|---|---|---|"]
    for key, row in summary["rows"].items():
        cams = row["per_camera_IDF1"]
        lines.append(f"| {label(key)} | {100 * row['IDF1']:.1f} | {100 * row['IDP']:.1f} | "
                     f"{100 * row['IDR']:.1f} | {row['IDs']:.0f} / {row['GT_IDs']:.0f} | "
                     f"{100 * float(np.mean(list(cams.values()))):.1f} |")
    thresholds = list(next(iter(summary["sweep"].values())))
    lines += ["", "| MTMC IDF1 by threshold | " + " | ".join(thresholds) + " |",
              "|---|" + "---|" * len(thresholds)]
    for key, by_thr in summary["sweep"].items():
        lines.append(f"| {label(key)} | " + " | ".join(f"{100 * v:.1f}" for v in by_thr.values())
                     + " |")
    lines += ["", f"| cross-camera tracklet pairs at distance <= {SHIPPED_THRESHOLD:.2f} | pairs | "
              "same person accepted | different persons accepted | median d same | "
              "median d different |", "|---|---|---|---|---|---|"]
    for name, parts in summary["pairs"].items():
        for part, p in parts.items():
            lines.append(f"| {label(name)} | {part} | {100 * p['same_accepted']:.1f}% | "
                         f"{100 * p['different_accepted']:.2f}% | "
                         f"{p['same_median_distance']:.3f} | "
                         f"{p['different_median_distance']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed (ignored with --seeds)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds; figures = median")
    parser.add_argument("--frames", type=int, default=200,
                        help="annotated frames used, from the start (400 = all, 200 s)")
    parser.add_argument("--crops", type=int, default=3, help="embedded crops per track")
    parser.add_argument("--misalign", type=float, default=0.2,
                        help="crop misalignment level (fraction of the box)")
    parser.add_argument("--jitter", type=float, default=0.05,
                        help="box edge noise std, fraction of box size")
    parser.add_argument("--gate", type=float, default=2.5, help="ground gate, metres")
    parser.add_argument("--ground-weight", type=float, default=0.5,
                        help="blend weight of the ground distance for pairs seen together "
                             "(the '+ blend' rows)")
    parser.add_argument("--thresholds", default="0.3,0.4,0.5",
                        help="association thresholds of the sweep")
    parser.add_argument("--models", default="hacnn,osnet",
                        help="comma-separated: hacnn, osnet (the peer ONNX), or "
                        "NAME=PATH[@INPUT] for any re-id file (ours or a peer IR/ONNX)")
    parser.add_argument("--hacnn", type=Path, default=REPO / "weights" / "hacnn_cuhk.safetensors")
    parser.add_argument("--osnet", type=Path,
                        default=DATA / "weights" / "osnet_x0_25_msmt17.onnx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "wildtrack_association.json")
    args = parser.parse_args()
    args.thresholds = [float(v) for v in args.thresholds.split(",") if v.strip()]
    if not any(abs(t - SHIPPED_THRESHOLD) < 1e-9 for t in args.thresholds):
        args.thresholds.append(SHIPPED_THRESHOLD)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or [args.seed]
    logging.basicConfig(level=logging.WARNING)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from benchmarks.lib.reid_models import embedder_for
    from pipeline.reid.embedder import CropEmbedder

    names = {"hacnn": "HA-CNN (ours, PyTorch bf16)", "osnet": "OSNet-x0.25 MSMT17 (peer, ONNX)"}
    embedders: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        if model == "hacnn":
            embedders[model] = CropEmbedder(weights=args.hacnn, precision="bf16",
                                            threads=args.threads, batch_size=32).embed_crops
        elif model == "osnet":
            embedders[model] = CropEmbedder(weights=args.osnet, backend="onnx",
                                            threads=args.threads, batch_size=32).embed_crops
        elif "=" in model:
            name, _, spec = model.partition("=")
            names[name] = name
            embedders[name] = embedder_for(spec, threads=args.threads,
                                           batch_size=32).embed_crops
        else:
            parser.error(f"unknown model {model!r}; choose hacnn, osnet or NAME=PATH")
    start = time.perf_counter()
    results = [run_seed(args, s, embedders, log) for s in seeds]
    summary = summarise(results)
    print(markdown(summary, names))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out = {"settings": settings, "seeds": seeds, "min_length_s": MIN_LENGTH_S,
           "max_embeddings": MAX_EMBEDDINGS, "shipped_threshold": SHIPPED_THRESHOLD,
           "summary": summary, "per_seed": results, "model_names": names,
           "wall_s": time.perf_counter() - start,
           "machine": {"cpu": platform.processor() or platform.machine(),
                       "threads": args.threads}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    log(f"wrote {args.json} ({out['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
