"""``mtmc search``: a crop cut from a run's own frame finds its track first; a run whose
model cannot be reproduced is an error, never a ranking in another model's space."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.export.store import STORE_NAME
from pipeline.export.store_read import StoreError
from pipeline.reid.embedder import l2_normalise
from pipeline.search import rank, search
from tests.conftest import REPO


def _query_crops(out: Path, tmp_path: Path, count: int = 3) -> list[tuple[Path, tuple]]:
    """Crops of the ``count`` longest tracks, each cut from the track's middle row's own
    frame of the source video: ``[(jpg, (camera, track_id))]``."""
    with open(out / "trajectories.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    lengths = Counter((r["camera"], int(r["track_id"])) for r in rows)
    queries = []
    for (camera, track_id), n in lengths.most_common(count):
        row = [r for r in rows if (r["camera"], int(r["track_id"])) == (camera, track_id)][n // 2]
        capture = cv2.VideoCapture(str(REPO / "samples" / "pdestre_session3" / f"{camera}.webm"))
        for _ in range(int(row["frame"]) + 1):
            ok, image = capture.read()
            assert ok
        capture.release()
        x1, y1, x2, y2 = (int(float(row[k])) for k in ("x1", "y1", "x2", "y2"))
        path = tmp_path / f"{camera}_{track_id}.jpg"
        cv2.imwrite(str(path), image[max(y1, 0):y2, max(x1, 0):x2])
        queries.append((path, (camera, track_id)))
    return queries


def test_a_crop_from_the_run_finds_its_own_track_first(sample_store_run, tmp_path):
    out, _ = sample_store_run
    for image, key in _query_crops(out, tmp_path):
        matches = search(out, image, top=5)
        assert (matches[0].camera, matches[0].track_id) == key, (key, matches[:2])
        assert matches[0].similarity > matches[1].similarity
        sims = [m.similarity for m in matches]
        assert sims == sorted(sims, reverse=True) and len(matches) == 5


def test_search_cli_json(sample_store_run, tmp_path, capsys):
    out, _ = sample_store_run
    image, (camera, track_id) = _query_crops(out, tmp_path, count=1)[0]
    assert cli(["search", str(out), "--image", str(image), "--top", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result) == 3 and (result[0]["camera"], result[0]["track_id"]) == (camera, track_id)
    assert set(result[0]) == {"similarity", "camera", "track_id", "global_id", "first_s",
                              "last_s", "rows"}


def _copy_with_meta(out: Path, tmp_path: Path, reid: dict | None) -> Path:
    run = tmp_path / "run"
    shutil.copytree(out, run)
    with sqlite3.connect(run / STORE_NAME) as db:
        if reid is None:
            db.execute("DELETE FROM meta WHERE key = 'reid'")
        else:
            db.execute("UPDATE meta SET value = ? WHERE key = 'reid'", (json.dumps(reid),))
    return run


def test_a_changed_or_missing_model_is_an_error(sample_store_run, tmp_path, capsys):
    out, _ = sample_store_run
    image, _ = _query_crops(out, tmp_path, count=1)[0]
    with sqlite3.connect(out / STORE_NAME) as db:
        reid = json.loads(db.execute("SELECT value FROM meta WHERE key = 'reid'").fetchone()[0])
    assert Path(reid["weights"]).name == "osnet_rga.safetensors" and len(reid["sha256"]) == 64

    changed = _copy_with_meta(out, tmp_path / "a", {**reid, "sha256": "0" * 64})
    with pytest.raises(StoreError, match="SHA-256 differs"):
        search(changed, image)
    assert cli(["search", str(changed), "--image", str(image)]) == 2
    assert "is not the file the run was embedded with" in capsys.readouterr().err

    moved = _copy_with_meta(out, tmp_path / "b", {**reid, "weights": str(tmp_path / "gone.st")})
    with pytest.raises(StoreError, match="are gone"):
        search(moved, image)
    without = _copy_with_meta(out, tmp_path / "c", None)
    with pytest.raises(StoreError, match="records no re-id model"):
        search(without, image)


def test_a_bad_query_image_is_one_error_line(sample_store_run, tmp_path, capsys):
    out, _ = sample_store_run
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not an image")
    for path in (tmp_path / "missing.jpg", not_image):
        assert cli(["search", str(out), "--image", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0], err


def test_rank_is_exact():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    query = rng.normal(size=16).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(l2_normalise(vectors), unit, rtol=1e-6)
    best, sim = rank(query, l2_normalise(vectors), top=7)
    full = unit @ (query / np.linalg.norm(query))
    assert best.tolist() == np.argsort(-full)[:7].tolist()
    np.testing.assert_allclose(sim, np.sort(full)[::-1][:7], rtol=1e-5)
    assert rank(query, unit[:3], top=10)[0].tolist() == np.argsort(-(unit[:3] @ (
        query / np.linalg.norm(query)))).tolist()


def test_similar_tracks_by_stored_vectors(sample_store_run):
    from pipeline.export.store_read import open_run
    from pipeline.search import similar_tracks

    out, _ = sample_store_run
    with open_run(out) as store:
        keys, vectors = store.embeddings()
        matches = similar_tracks(store, *keys[0], top=4)
        assert len(matches) == 4 and keys[0] not in {(m.camera, m.track_id) for m in matches}
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        sims = np.delete(unit @ unit[0], 0)
        np.testing.assert_allclose([m.similarity for m in matches],
                                   np.sort(sims)[::-1][:4], atol=1e-4)
        short = [(t.camera, t.track_id) for t in store.tracklets()
                 if (t.camera, t.track_id) not in set(keys)]
        if short:
            with pytest.raises(StoreError, match="no appearance vector"):
                similar_tracks(store, *short[0])
        with pytest.raises(StoreError, match="not in this run"):
            similar_tracks(store, "cam1", 99999)


def test_model_digest_covers_an_ir_s_weights(tmp_path):
    from pipeline.reid.runtimes import model_digest

    xml, binary = tmp_path / "m.xml", tmp_path / "m.bin"
    xml.write_text("<net/>")
    binary.write_bytes(b"\x00" * 8)
    before = model_digest(xml)
    binary.write_bytes(b"\x01" * 8)  # same .xml, other weights
    assert model_digest(xml) != before and len(before) == 64


def test_a_finished_runs_vectors_are_read_once(sample_store_run):
    """The review page's "similar" must not re-read every vector per click."""
    from pipeline.export.store_read import open_run
    from pipeline.search import similar_tracks

    with open_run(sample_store_run[0]) as store:
        keys, vectors = store.embeddings()
        first = similar_tracks(store, *keys[0], top=5)
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        again = similar_tracks(store, *keys[0], top=5)
        store._db.set_trace_callback(None)
        assert [m.as_dict() for m in again] == [m.as_dict() for m in first]
        assert not any("embedding FROM tracklets" in s for s in statements), statements
        assert store.embeddings()[1] is vectors
