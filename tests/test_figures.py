"""Headline figures quoted in README and docs/ agree with the results files that the
benchmarks wrote (``docs/results/*.json``, ``benchmarks/lib/results.py``).

Each quote is the text a document must contain, made from a results file: when a
benchmark is run again and its figures move, this fails until the documents quoting
them are updated, and a document edited by hand cannot drift from its measurement.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from tests.conftest import REPO

RESULTS = REPO / "docs" / "results"


def _results(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _pct(value: float) -> str:
    """A fraction as a percentage with one decimal, rounded half up from its printed
    digits (0.9035 -> 90.4, as a reader rounds it)."""
    return str((Decimal(str(value)) * 100).quantize(Decimal("0.1"), ROUND_HALF_UP))


def _pets09(variant: str) -> dict:
    return _results("pets09_pipeline")["variants"][variant]["figures"]


def _track(variant: str) -> str:
    t = _pets09(variant)["track"]
    return f"{_pct(t['HOTA'])} / {_pct(t['IDF1'])}"


def _people(variant: str) -> str:
    p = _pets09(variant)["people"]
    return f"{_pct(p['HOTA'])} / {_pct(p['IDF1'])}"


def _floor_row(camera: str) -> str:
    r = _results("floor_accuracy")["figures"][camera]
    f, p = r["files"], r["points"]
    label = camera if camera == "all" else f"{camera} ({r['view']})"
    return (f"| {label} | {r['annotated']} | {r['no_foot_point']} | "
            f"{f['median_m']:.3f} / {f['p90_m']:.3f} / {f['p95_m']:.3f} | "
            f"{_pct(f['within_0.3m'])}% | "
            f"{p['median_m']:.3f} / {p['p90_m']:.3f} / {p['p95_m']:.3f} | "
            f"{_pct(p['within_0.3m'])}% |")


def _shipped_pipeline_row() -> str:
    t = _pets09("shipped")["track"]
    return (f"| **{_pct(t['HOTA'])}** | {_pct(t['DetA'])} | {_pct(t['AssA'])} | "
            f"**{_pct(t['IDF1'])}** | {_pct(t['MOTA'])} | {int(t['IDSW'])} | {int(t['FP'])} | "
            f"{int(t['FN'])} | **{_people('shipped')}** |")


def _shipped_reid_row() -> str:
    t = _pets09("shipped")["track"]
    return (f"| {_pct(t['HOTA'])} / {_pct(t['IDF1'])} / {int(t['IDSW'])} / {int(t['FP'])} | "
            f"**{_people('shipped')}** |")


QUOTES: list[tuple[str, Callable[[], str]]] = [
    ("README.md", lambda: "per track HOTA {}, IDF1 {}".format(
        *_track("shipped").split(" / "))),
    ("README.md", lambda: f"(detecting every frame {_track('every_frame')}; HA-CNN "
                          f"{_track('hacnn')}; motion only {_track('motion_only')};"),
    ("README.md", lambda: f"across exits and returns, {_people('shipped')} "
                          f"(every frame {_people('every_frame')}; HA-CNN {_people('hacnn')})"),
    ("README.md", lambda: "land a median {:.1f} m".format(
        _results("floor_accuracy")["figures"]["all"]["files"]["median_m"])),
    ("docs/PIPELINE.md", _shipped_pipeline_row),
    ("docs/REID.md", _shipped_reid_row),
    *[("docs/FLOOR.md", lambda c=c: _floor_row(c))
      for c in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "all")],
]


@pytest.mark.parametrize(("document", "quote"), QUOTES,
                         ids=[f"{d}-{i}" for i, (d, _) in enumerate(QUOTES)])
def test_quoted_figure_matches_its_results_file(document: str, quote: Callable[[], str]):
    text = (REPO / document).read_text()
    expected = quote()
    assert expected in text, (f"{document} should quote {expected!r} (docs/results/); "
                              "run the benchmark again or update the document")


def test_results_files_say_what_made_them():
    files = sorted(RESULTS.glob("*.json"))
    assert {p.stem for p in files} >= {"pets09_pipeline", "floor_accuracy"}
    for path in files:
        data = json.loads(path.read_text())
        for entry in data.get("variants", {"": data}).values():
            assert entry["command"].startswith("python3 -m benchmarks."), path
            assert entry["commit"] and entry["machine"]["cpu"] and entry["date"], path


def test_a_changed_figure_is_caught(tmp_path, monkeypatch):
    """The check can fail: a results file whose figure moved no longer matches."""
    data = _results("pets09_pipeline")
    data["variants"]["shipped"]["figures"]["track"]["HOTA"] += 0.01
    (tmp_path / "pets09_pipeline.json").write_text(json.dumps(data))
    monkeypatch.setattr(sys.modules[__name__], "RESULTS", Path(tmp_path))
    assert QUOTES[0][1]() not in (REPO / "README.md").read_text()
