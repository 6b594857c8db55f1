"""Online vs offline association against cross-camera ground truth (WILDTRACK scenes).

The four-camera sample has no identity ground truth; this benchmark has. It builds the
scenes of ``benchmarks/wildtrack_association.py`` (see its docstring and
docs/MTMC_ASSOCIATION.md: the real WILDTRACK boxes and identities of 7 overlapping
views, seeded tracker-like tracks cut from them, every person given a CUHK01 test
identity whose real images are embedded by the shipped HA-CNN, ``--crops`` crops per
track) and feeds them to ``OnlineAssociator`` the way the runner does: observations in
time order into one ``TrackletBuilder`` per camera, and every second of scene time the
finished tracklets and snapshots of the open ones. The online variants of
``online_vs_offline.VARIANTS`` (before id hysteresis, then each of its parts) run side
by side on the same scenes, with offline association of the finished tracklets as the
reference (appearance only: the online associator has no ground-plane cue).

WILDTRACK is annotated at 2 fps: the tracklet builders are told so, and the variants'
``min_s`` (seconds) asks for the same evidence time as on video (4 s -> 8 observations).

Scores, medians over seeds: MTMC IDF1/IDP/IDR against every visible gt box
(``pipeline.evaluation.mtmc``), pairwise precision/recall of "same person" over the
tracklets, id changes after the first assignment.

    flock /tmp/cpu.lock nice -n 5 python3 -m benchmarks.online_wildtrack --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import benchmarks.online_vs_offline as ovo
import benchmarks.wildtrack_association as wa
from benchmarks.lib import wildtrack as wt
from pipeline.association import OfflineAssociator, OnlineAssociator
from pipeline.tracking import TrackletBuilder
from pipeline.types import GlobalTrack, Tracklet


def run_online(tracks: list, emb: dict, params: dict[str, Any]
               ) -> tuple[list[Tracklet], dict[tuple[str, int], int], int, list[float]]:
    """Feed one scene to an online associator as the runner would.

    Returns:
        The finished tracklets, their final global ids, the number of id changes, the
        seconds each association round took.
    """
    associator = OnlineAssociator.from_params(**params)
    builders = {c: TrackletBuilder(camera_id=c, min_length_s=wa.MIN_LENGTH_S,
                                   fps=wa.OBSERVATIONS_PER_S,
                                   max_embeddings=wa.MAX_EMBEDDINGS) for c in wt.CAMERAS}
    items = sorted(wt.tracker_frames(tracks, emb), key=lambda x: (x[2], x[0]))
    finished: list[Tracklet] = []
    log = []
    round_s: list[float] = []
    next_round, now = 1.0, 0.0
    for cam, frame, ts, tracks_now, boxes in items:
        while ts >= next_round:
            done = [t for b in builders.values() for t in b.finished()]
            finished += done
            snaps = [t for b in builders.values()
                     for t in b.snapshots(min_s=associator.min_s)]
            started = time.perf_counter()
            log += associator.update(now_s=now, open_tracklets=snaps, finished=done)
            round_s.append(time.perf_counter() - started)
            next_round += 1.0
        builders[cam].update(frame, ts, tracks_now, boxes, wt.IMAGE_WH)
        now = ts
    done = [t for b in builders.values() for t in b.finish()]
    finished += done
    log += associator.finish(now_s=now, finished=done)
    final = {}
    for r in log:
        final[(r.camera, r.track_id)] = r.new_global_id
    return finished, final, associator.revisions, round_s


def _identities(final: dict[tuple[str, int], int]) -> list[GlobalTrack]:
    groups: dict[int, list[tuple[str, int]]] = {}
    for key, gid in final.items():
        groups.setdefault(gid, []).append(key)
    return [GlobalTrack(global_id=g, members=tuple(sorted(m))) for g, m in sorted(groups.items())]


def run_seed(args: argparse.Namespace, seed: int, embed, variants: dict) -> dict:
    ann = wt.load_annotations(wa.WILDTRACK / "annotations_positions", max_frames=args.frames)
    gt = wt.gt_table(ann)
    tracks = wt.synthesize_tracks(ann, wt.FragmentConfig(jitter=args.jitter), seed=seed)
    identity = wt.assign_identities(ann.person_ids, wa.TEST_IDS, seed=seed)
    weights = wa.REPO / "weights" / "hacnn_cuhk.safetensors"
    stamp = f"{weights.stat().st_size}_{int(weights.stat().st_mtime)}"  # new weights: new cache
    cache = None if args.cache is None else args.cache / (
        f"seed{seed}_f{args.frames}_c{args.crops}_m{args.misalign}_j{args.jitter}_w{stamp}.npz")
    if cache is not None and cache.exists():
        with np.load(cache) as saved:
            emb = {(str(k.split("/")[0]), int(k.split("/")[1])): saved[k] for k in saved.files}
        n_crops = -1
    else:
        crops, where = wa.make_crops(tracks, identity, per_track=args.crops,
                                     misalign=args.misalign, seed=seed)
        emb = wa.spread(tracks, where, embed(crops))
        n_crops = len(crops)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **{f"{c}/{t}": v for (c, t), v in emb.items()})
    person = {t.key: t.person_id for t in tracks}
    rows = {}
    tracklets: list[Tracklet] = []
    for name, overrides in variants.items():
        tracklets, final, revisions, round_s = run_online(tracks, emb, overrides)
        p, r = ovo.pairwise(person, final)
        rows[name] = {**wa.score(gt, tracklets, _identities(final)),
                      "pairwise_precision": p, "pairwise_recall": r, "revisions": revisions,
                      "round_ms_median": 1000 * float(np.median(round_s)),
                      "round_ms_max": 1000 * float(np.max(round_s))}
    offline = OfflineAssociator().associate(tracklets)
    p, r = ovo.pairwise(person, {k: g.global_id for g in offline for k in g.members})
    rows["offline"] = {**wa.score(gt, tracklets, offline), "pairwise_precision": p,
                       "pairwise_recall": r, "revisions": 0, "round_ms_median": 0.0,
                       "round_ms_max": 0.0}
    return {"rows": rows, "tracklets": len(tracklets), "crops": n_crops,
            "persons": int(len(ann.person_ids))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--frames", type=int, default=200,
                        help="annotated frames used, from the start (2 fps: 200 = 100 s)")
    parser.add_argument("--crops", type=int, default=3, help="embedded crops per track")
    parser.add_argument("--misalign", type=float, default=0.2)
    parser.add_argument("--jitter", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--cache", type=Path, default=wa.REPO / "runs" / "online_wildtrack_cache",
                        help="embeddings per seed are kept here (re-used on the next run)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help='extra online variant, e.g. \'r1={"switch_rounds": 1}\'')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from pipeline.reid.embedder import CropEmbedder

    embedder: list = []

    def embed(crops: list) -> np.ndarray:  # the model loads only when a seed needs it
        if not embedder:
            embedder.append(CropEmbedder(weights=wa.REPO / "weights" / "hacnn_cuhk.safetensors",
                                         precision="bf16", threads=args.threads,
                                         batch_size=32))
        return embedder[0].embed_crops(crops)

    variants = dict(ovo.VARIANTS)
    for text in args.variant:
        name, _, spec = text.partition("=")
        variants[name] = json.loads(spec)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    start = time.perf_counter()
    results = [run_seed(args, s, embed, variants) for s in seeds]
    keys = ("IDF1", "IDP", "IDR", "IDs", "GT_IDs", "pairwise_precision", "pairwise_recall",
            "revisions", "round_ms_median", "round_ms_max")
    summary = {name: {k: round(float(np.median([r["rows"][name][k] for r in results])), 4)
                      for k in keys} for name in results[0]["rows"]}
    report = {"seeds": seeds, "frames": args.frames, "crops_per_track": args.crops,
              "observations_per_s": wa.OBSERVATIONS_PER_S,
              "tracklets": [r["tracklets"] for r in results],
              "persons": [r["persons"] for r in results], "median": summary,
              "per_seed": [{n: {k: row[k] for k in keys} for n, row in r["rows"].items()}
                           for r in results],
              "wall_s": round(time.perf_counter() - start, 1)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
