"""Golden runs: short clips of the shipped footage whose outputs are stored in tests/golden.

Each case is a shipped config with a few keys overridden (fp32 detector and embedder,
so results do not depend on whether the CPU has bf16; two threads) and a tick limit.
``tests/test_golden.py`` runs every case and compares the outputs with the stored ones:
text and integer fields exactly, floats to the precision the files print them with
(one unit of the last printed digit, for rounding on another CPU of the same kind).

When a change is MEANT to change the outputs (new tracker defaults, new re-id weights),
regenerate the stored files and commit them with the change::

    PYTHONPATH=$PWD python3 -m tests.golden_runs          # all cases
    PYTHONPATH=$PWD python3 -m tests.golden_runs sample_online

and say in the commit message why the outputs changed.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"

# Summary fields that depend only on the data (no timings, machine or paths).
SUMMARY_FIELDS = ("live", "association", "camera_frames", "ticks", "tracklets", "identities",
                  "identities_multi_camera", "identities_short_tracks", "revisions", "rows",
                  "reid", "outputs")
CAMERA_FIELDS = ("id", "fps", "frames", "size_wh")


@dataclass(frozen=True)
class GoldenCase:
    """One stored run: a shipped config, overrides of its keys, a tick limit."""

    config: str
    max_frames: int
    overrides: Mapping[str, Any] = field(default_factory=dict)


_FP32 = {"detector": {"precision": "fp32"}, "reid": {"precision": "fp32"}, "threads": 2}

CASES: dict[str, GoldenCase] = {
    "sample_offline": GoldenCase("configs/sample.yaml", 40,
                                 {**_FP32, "association": {"mode": "offline"}}),
    # min_s 1.0 so that ids are assigned and revised while the clip runs.
    "sample_online": GoldenCase("configs/sample.yaml", 40,
                                {**_FP32, "association": {"mode": "online", "min_s": 1.0}}),
    "pets09_offline": GoldenCase("configs/pets09_s2l1.yaml", 60,
                                 {**_FP32, "association": {"mode": "offline"}}),
    "pets09_online": GoldenCase("configs/pets09_s2l1.yaml", 60,
                                {**_FP32, "association": {"mode": "online", "min_s": 1.0}}),
}


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def run_case(name: str, out_dir: Path) -> dict[str, Any]:
    """Run one case into ``out_dir``; returns the deterministic part of its summary."""
    from pipeline.config import config_from_dict
    from pipeline.runner import RunOptions, run

    case = CASES[name]
    path = REPO / case.config
    data = _merge(yaml.safe_load(path.read_text()), case.overrides)
    config = config_from_dict(data, base_dir=path.parent, where=f"{case.config} ({name})")
    summary = run(config, out_dir, RunOptions(max_frames=case.max_frames, progress=False,
                                              handle_signals=False))
    return stable_summary(summary)


def stable_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a run summary that do not depend on time, machine or paths."""
    out = {k: summary[k] for k in SUMMARY_FIELDS}
    out["cameras"] = [{k: c[k] for k in CAMERA_FIELDS} for c in summary["cameras"]]
    return json.loads(json.dumps(out))  # tuples -> lists, as stored


def stored_files(out_dir: Path) -> list[str]:
    """The text outputs a golden run keeps (CSV files and MOT txt), relative paths."""
    names = [p.relative_to(out_dir).as_posix() for p in sorted(out_dir.rglob("*"))
             if p.is_file() and p.suffix in (".csv", ".txt")]
    return [n for n in names if n != "tracks_local.csv"]  # = trajectories.csv with -1 ids


def update(names: list[str]) -> None:
    """Run the cases and store their outputs in tests/golden/<case>/."""
    for name in names:
        target = GOLDEN / name
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            summary = run_case(name, out)
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for rel in stored_files(out):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / rel, target / rel)
            (target / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"{name}: stored {len(stored_files(target))} files in {target}")


def _decimals(text: str) -> int | None:
    """Decimals printed in a numeric field, None for an integer or non-number."""
    try:
        float(text)
    except ValueError:
        return None
    return len(text.split(".", 1)[1]) if "." in text else None


def compare_text_tables(actual: Path, expected: Path) -> list[str]:
    """Differences between two CSV/MOT files: exact except floats (one printed unit)."""
    with open(actual, newline="") as a, open(expected, newline="") as e:
        got, want = list(csv.reader(a)), list(csv.reader(e))
    problems = []
    if len(got) != len(want):
        problems.append(f"{expected.name}: {len(got)} lines, golden {len(want)}")
    for line, (g, w) in enumerate(zip(got, want, strict=False), start=1):
        if g == w:
            continue
        if len(g) != len(w):
            problems.append(f"{expected.name}:{line}: {g} != golden {w}")
        else:
            for gv, wv in zip(g, w, strict=True):
                places = _decimals(wv)
                if gv == wv:
                    continue
                if places is None or _decimals(gv) != places or \
                        abs(float(gv) - float(wv)) > 1.01 * 10.0 ** -places:
                    problems.append(f"{expected.name}:{line}: {g} != golden {w}")
                    break
        if len(problems) >= 10:
            problems.append("... (more differences not listed)")
            break
    return problems


def compare(name: str, out_dir: Path, summary: Mapping[str, Any]) -> list[str]:
    """Every difference between a fresh run in ``out_dir`` and the stored golden run."""
    target = GOLDEN / name
    problems = []
    golden_summary = json.loads((target / "summary.json").read_text())
    for key in sorted(set(golden_summary) | set(summary)):
        if golden_summary.get(key) != summary.get(key):
            problems.append(f"summary {key}: {summary.get(key)!r} != golden "
                            f"{golden_summary.get(key)!r}")
    want = stored_files(target)
    got = stored_files(out_dir)
    if want != got:
        problems.append(f"files {got} != golden {want}")
    for rel in sorted(set(want) & set(got)):
        problems += compare_text_tables(out_dir / rel, target / rel)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the stored golden runs.")
    parser.add_argument("cases", nargs="*",
                        help=f"cases to regenerate (default all: {', '.join(CASES)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    logging.basicConfig(level=logging.WARNING)
    update(list(args.cases) or list(CASES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
