"""How far online (bounded-lag) association falls behind offline on the same footage.

Runs ``mtmc run`` three times on one config (default: the shipped four-camera sample):
``association.mode: offline``; ``online`` as it was before id hysteresis (min_s
10, switch_margin 0, switch_rounds 1); ``online`` with the defaults (other association
keys unchanged, plus ``--lag``/``--min-frames``). Detection and tracking are
deterministic, so all runs see the same tracklets and only the identities differ.
There is no cross-camera ground truth for the sample, so offline is the reference,
not the truth; ``offline_on_partial_evidence`` shows how much that reference itself
moves when decided on the tracklets known at each second.

The online runs also record what their associator was given at every association
round (``association_inputs.pkl``). The before-run's inputs (open tracklets from 10
frames on, the most evidence) are then replayed, side by side, through
``OnlineAssociator`` variants (``VARIANTS``: each adds one part of the hysteresis), so
the variants are compared on exactly the same evidence. Replays of a run's own inputs
must reproduce it (``replay_matches_run``).

Prints JSON. Per variant: revisions (id changes after the first assignment),
identities, identities seen by 2+ cameras, tracklets whose identity differs from
offline's after the best one-to-one matching of identities, pairwise agreement and the
pairwise precision/recall of "same person" decisions taking offline as the reference.

With ``--synthetic N`` it instead runs the same variants on N seeded synthetic scenes
WITH cross-camera ground truth (no footage, seconds): 15 people, each crossing 1-3 of
4 cameras one after the other (3-12 s per view, -2..3 s between views: negative =
seen by two cameras at once); 64-d appearance with a shared component so that two
people's pooled vectors lie ~0.6 apart (cosine) and one person's ~0.35; a per-tracklet
view offset; per-frame noise, so a growing tracklet's vector sharpens as
1/sqrt(frames). Tracklets are fed every second for 45 s as the runner does. Printed:
pairwise precision/recall of "same person" against the truth, for each online variant
and for offline on the finished tracklets, means over seeds.

    nice -n 10 python3 -m benchmarks.online_vs_offline --out runs/online_vs_offline
    # replay only (re-uses the two runs' outputs in --out):
    python3 -m benchmarks.online_vs_offline --out runs/online_vs_offline --reuse
    python3 -m benchmarks.online_vs_offline --synthetic 30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
INPUTS = "association_inputs.pkl"
# Variants replayed on the recorded inputs: name -> OnlineAssociator overrides. The
# first is the associator before id hysteresis; each next one adds one of its parts.
VARIANTS: dict[str, dict[str, Any]] = {
    "no_hysteresis": {"min_s": 1.0, "switch_margin": 0.0, "switch_rounds": 1},
    "evidence": {"switch_margin": 0.0, "switch_rounds": 1},
    "evidence_and_margin": {"switch_rounds": 1},
    "defaults": {},
}


def _ids(path: Path) -> dict[tuple[str, int], int]:
    from pipeline.export import read_trajectories

    rows = read_trajectories(path)
    # Id -1: a track too short to become a tracklet (never associated); left out.
    return {(str(c), int(t)): int(g)
            for c, t, g in zip(rows.camera, rows.track_id, rows.global_id, strict=True)
            if g > 0}


def compare(reference: dict[tuple[str, int], int], other: dict[tuple[str, int], int]) -> dict:
    """Differences between two identity labelings of the same tracklets."""
    import numpy as np

    from pipeline.geometry import linear_assignment

    keys = sorted(set(reference) & set(other))
    ref_ids = sorted({reference[k] for k in keys})
    oth_ids = sorted({other[k] for k in keys})
    overlap = np.zeros((len(ref_ids), len(oth_ids)))
    ri = {g: i for i, g in enumerate(ref_ids)}
    oi = {g: i for i, g in enumerate(oth_ids)}
    for k in keys:
        overlap[ri[reference[k]], oi[other[k]]] += 1
    matches, _, _ = linear_assignment(-overlap, max_cost=-0.5)  # only overlapping pairs
    matched = {(int(a), int(b)) for a, b in matches}
    same = sum(1 for k in keys if (ri[reference[k]], oi[other[k]]) in matched)
    both = ref_same = oth_same = agree = 0
    for a, b in combinations(keys, 2):
        r, o = reference[a] == reference[b], other[a] == other[b]
        both += r and o
        ref_same += r
        oth_same += o
        agree += r == o
    pairs = len(keys) * (len(keys) - 1) // 2

    def multi(labels: dict) -> int:
        cams: dict[int, set] = {}
        for (camera, _), g in labels.items():
            cams.setdefault(g, set()).add(camera)
        return sum(len(c) > 1 for c in cams.values())

    return {
        "tracklets": len(keys),
        "identities_reference": len(ref_ids),
        "identities_other": len(oth_ids),
        "multi_camera_reference": multi({k: reference[k] for k in keys}),
        "multi_camera_other": multi({k: other[k] for k in keys}),
        "tracklets_with_different_identity": len(keys) - same,
        "pairwise_agreement": round(agree / pairs, 4) if pairs else 1.0,
        "same_pairs_reference": ref_same,
        "same_pairs_other": oth_same,
        "pairwise_precision": round(both / oth_same, 4) if oth_same else 1.0,
        "pairwise_recall": round(both / ref_same, 4) if ref_same else 1.0,
        "largest_identity_sizes_reference": sorted(Counter(reference[k] for k in keys)
                                                   .values(), reverse=True)[:5],
        "largest_identity_sizes_other": sorted(Counter(other[k] for k in keys).values(),
                                               reverse=True)[:5],
    }


def _recording_associator(log: list) -> type:
    """An OnlineAssociator that appends every call's inputs to ``log``."""
    from pipeline.association import OnlineAssociator

    class Recording(OnlineAssociator):
        def update(self, *, now_s, open_tracklets=(), finished=()):
            open_tracklets, finished = list(open_tracklets), list(finished)
            if not self._finishing:
                log.append(("update", float(now_s), open_tracklets, finished))
            return super().update(now_s=now_s, open_tracklets=open_tracklets,
                                  finished=finished)

        def finish(self, *, now_s, finished=(), short_tracks=()):
            finished = list(finished)
            log.append(("finish", float(now_s), [], finished))
            self._finishing = True
            try:
                return super().finish(now_s=now_s, finished=finished,
                                      short_tracks=short_tracks)
            finally:
                self._finishing = False

        _finishing = False

    return Recording


def replay(inputs: list, params: dict[str, Any]) -> tuple[dict[tuple[str, int], int], int,
                                                           int, list]:
    """Feed recorded association inputs to a fresh associator.

    Returns:
        Final global id per tracklet, the number of id changes, how many of those were
        made unconfirmed (constraints), every revision.
    """
    from pipeline.association import OnlineAssociator

    associator = OnlineAssociator.from_params(**params)
    log = []
    for kind, now_s, open_tracklets, finished in inputs:
        if kind == "update":
            log += associator.update(now_s=now_s, open_tracklets=open_tracklets,
                                     finished=finished)
        else:
            log += associator.finish(now_s=now_s, finished=finished)
    final: dict[tuple[str, int], int] = {}
    for r in log:
        final[(r.camera, r.track_id)] = r.new_global_id
    return final, associator.revisions, associator.constraint_moves, log


def _lag_of_changes(log: list) -> dict[str, float | None]:
    first: dict[tuple[str, int], float] = {}
    lags = []
    for r in log:
        key = (r.camera, r.track_id)
        if r.old_global_id < 0:
            first[key] = r.time_s
        else:
            lags.append(r.time_s - first[key])
    return {"max_s": round(max(lags), 2) if lags else None,
            "tracklets_changed": len({(r.camera, r.track_id) for r in log
                                      if r.old_global_id > 0})}


def pairwise(truth: dict, labels: dict) -> tuple[float, float]:
    """Precision and recall of "same identity" pairs of ``labels`` against ``truth``."""
    both = true_same = said_same = 0
    for a, b in combinations(sorted(set(truth) & set(labels)), 2):
        t, s = truth[a] == truth[b], labels[a] == labels[b]
        both += t and s
        true_same += t
        said_same += s
    return both / max(said_same, 1), both / max(true_same, 1)


def synthetic_scene(seed: int) -> tuple[list, dict[tuple[str, int], int]]:
    """Recorded-style association inputs of one synthetic scene, and its truth."""
    import numpy as np

    from pipeline.types import Tracklet

    rng = np.random.default_rng(seed)
    dim, fps = 64, 10.0
    shared = rng.normal(size=dim)
    looks = 0.55 * shared / np.linalg.norm(shared) + 0.45 * _unit_rows(rng.normal(size=(15, dim)))
    looks = _unit_rows(looks)
    visits = []  # camera, track id, start s, end s, person
    next_track = dict.fromkeys(("c1", "c2", "c3", "c4"), 0)
    for person in range(len(looks)):
        t = float(rng.uniform(0, 20))
        for camera in rng.permutation(list(next_track))[: int(rng.integers(1, 4))]:
            next_track[camera] += 1
            length = float(rng.uniform(3, 12))
            visits.append((str(camera), next_track[camera], t, t + length, person))
            t += length + float(rng.uniform(-2, 3))
    view = {(c, k): rng.normal(size=dim) / np.sqrt(dim) for c, k, *_ in visits}
    inputs, done = [], set()
    for now in np.arange(1.0, 45.0, 1.0):
        open_tracklets, finished = [], []
        for camera, track, start, end, person in visits:
            if start > now or (camera, track) in done:
                continue
            stop = min(end, now)
            frames = np.arange(round(start * fps), round(stop * fps) + 1)
            noise = rng.normal(size=dim) / np.sqrt(dim) * 3.5 / np.sqrt(len(frames))
            vector = looks[person] + 0.6 * view[(camera, track)] + noise
            tracklet = Tracklet(camera_id=camera, track_id=track, frames=frames,
                                timestamps_s=frames / fps, xyxy=np.zeros((len(frames), 4)),
                                embedding=vector / np.linalg.norm(vector), quality=0.8)
            if end <= now:
                finished.append(tracklet)
                done.add((camera, track))
            else:
                open_tracklets.append(tracklet)
        inputs.append(("update", float(now), open_tracklets, finished))
    inputs.append(("finish", 45.0, [], []))
    return inputs, {(c, k): p for c, k, _, _, p in visits}


def _unit_rows(x):
    import numpy as np

    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic_report(seeds: int, variants: dict[str, dict[str, Any]]) -> dict:
    """Means over seeded synthetic scenes: revisions and pairwise P/R against the truth."""
    import numpy as np

    from pipeline.association import OfflineAssociator

    rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    rows["offline"] = []
    counts = []
    for seed in range(seeds):
        inputs, truth = synthetic_scene(seed)
        counts.append(len(truth))
        for name, overrides in variants.items():
            final, revisions, _, _ = replay(inputs, overrides)
            rows[name].append((*pairwise(truth, final), revisions))
        finished = [t for *_, done in inputs for t in done]
        offline = {k: g.global_id for g in OfflineAssociator().associate(finished)
                   for k in g.members}
        rows["offline"].append((*pairwise(truth, offline), 0))
    tracklets = round(float(np.mean(counts)), 1)
    return {name: {"pairwise_precision": round(float(np.mean([r[0] for r in v])), 3),
                   "pairwise_recall": round(float(np.mean([r[1] for r in v])), 3),
                   "revisions": round(float(np.mean([r[2] for r in v])), 1)}
            for name, v in rows.items()} | {"seeds": seeds, "tracklets_per_scene": tracklets}


def main() -> int:
    from pipeline import association
    from pipeline.config import AssociationConfig, load_config
    from pipeline.runner import RunOptions, run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "sample.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "online_vs_offline")
    parser.add_argument("--lag", type=float, default=10.0)
    parser.add_argument("--min-s", type=float, default=None,
                        help="online min_s of the run (default: the code's)")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true",
                        help="skip the runs; replay the inputs recorded in --out")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help='extra replay variant, e.g. \'m10={"switch_margin": 0.1}\'')
    parser.add_argument("--synthetic", type=int, default=0, metavar="SEEDS",
                        help="only the synthetic scenes with ground truth, this many seeds")
    args = parser.parse_args()
    variants = dict(VARIANTS)
    for text in args.variant:
        name, _, spec = text.partition("=")
        variants[name] = json.loads(spec)
    if args.synthetic:
        print(json.dumps(synthetic_report(args.synthetic, variants), indent=1))
        return 0
    base = load_config(args.config)
    params = {k: v for k, v in base.association.params.items() if k != "mode"}
    online_params = {**params, "lag_s": args.lag}
    if args.min_s is not None:
        online_params["min_s"] = args.min_s
    # End-to-end runs: offline, online as before id hysteresis, online with the defaults.
    runs = {"offline": {"mode": "offline", **params},
            "online_before": {"mode": "online", **online_params, **VARIANTS["no_hysteresis"]},
            "online": {"mode": "online", **online_params}}
    summaries: dict[str, Any] = {}
    if not args.reuse:
        saved = association.ASSOCIATORS["online"]
        try:
            for name, assoc in runs.items():
                inputs: list = []
                association.ASSOCIATORS["online"] = _recording_associator(inputs)
                config = dataclasses.replace(
                    base, association=AssociationConfig(params=assoc),
                    output=dataclasses.replace(base.output, plots=False, save_video=False))
                summaries[name] = run(config, args.out / name, RunOptions(
                    max_frames=args.max_frames, threads=args.threads, progress=False))
                if inputs:
                    with open(args.out / name / INPUTS, "wb") as handle:
                        pickle.dump(inputs, handle)
        finally:
            association.ASSOCIATORS["online"] = saved
    recorded = {}
    for name in ("online_before", "online"):
        with open(args.out / name / INPUTS, "rb") as handle:
            recorded[name] = pickle.load(handle)  # noqa: S301 - written by this script
    offline = _ids(args.out / "offline" / "trajectories.csv")
    finals = {name: _ids(args.out / name / "trajectories_final.csv")
              for name in ("online_before", "online")}
    # The before-run saw open tracklets from 10 frames on: the most evidence, so every
    # variant (min_s >= 1) is replayed on its inputs.
    replays = {}
    for name, overrides in variants.items():
        final, revisions, constraint_moves, log = replay(recorded["online_before"],
                                                         {**online_params, **overrides})
        replays[name] = {"params": overrides, "revisions": revisions,
                         "constraint_moves": constraint_moves,
                         "first_assignments": sum(r.old_global_id < 0 for r in log),
                         "changes": _lag_of_changes(log),
                         "comparison": compare(offline, final)}
    replay_matches_run = {
        "online_before": replay(recorded["online_before"],
                                {**online_params, **VARIANTS["no_hysteresis"]})[0]
        == finals["online_before"],
        "online": replay(recorded["online"], online_params)[0] == finals["online"],
    }
    report = {
        "config": str(args.config), "lag_s": args.lag, "min_s": args.min_s,
        "max_frames": args.max_frames, "association_rounds": len(recorded["online"]),
        "runs": {name: {"revisions": summaries[name]["revisions"],
                        "identities": summaries[name]["identities"],
                        "identities_multi_camera": summaries[name]["identities_multi_camera"],
                        "associate_ms": summaries[name]["stage_ms"].get("associate"),
                        **({"comparison": compare(offline, finals[name])}
                           if name in finals else {})}
                 for name in runs} if summaries else None,
        "replay_matches_run": replay_matches_run,
        "replay": replays,
        "offline_on_partial_evidence": offline_stability(recorded["online_before"], offline),
    }
    print(json.dumps(report, indent=1))
    return 0


def offline_stability(inputs: list, offline: dict[tuple[str, int], int]) -> dict[str, dict]:
    """Offline association of the tracklets as known at each round vs the final offline.

    How much the reference itself moves while evidence accumulates (pairwise
    precision/recall of "same identity", over the tracklets known at that time).
    """
    from pipeline.association import OfflineAssociator

    known: dict = {}
    out = {}
    for _, now_s, open_tracklets, finished in inputs:
        for t in [*open_tracklets, *finished]:
            known[t.key] = t
        if len(known) < 2:
            continue
        labels = {k: g.global_id for g in OfflineAssociator().associate(list(known.values()))
                  for k in g.members}
        c = compare(offline, labels)
        out[f"{now_s:g}"] = {"tracklets": c["tracklets"],
                             "pairwise_precision": c["pairwise_precision"],
                             "pairwise_recall": c["pairwise_recall"]}
    return out


if __name__ == "__main__":
    sys.exit(main())
