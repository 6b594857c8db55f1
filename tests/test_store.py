"""The run store (run.sqlite) and ``mtmc query`` on a real short run of the sample.

Expectations are derived from the run's trajectory CSV with the csv module, never from
the store itself. One shared run (``sample_store_run``, 30 ticks); the rest is
hermetic, except the kill -9 test, which runs ``mtmc run`` against the RTSP test
server (skips like the other live tests when GStreamer RTSP is unavailable).
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.export import RevisionSink, Sinks, TrajectorySink
from pipeline.export.crops import BestCrops
from pipeline.export.store import STORE_NAME, StoreSink
from pipeline.export.store_read import StoreError, open_run
from pipeline.types import FrameTracks, Identities, Revision, seconds_to_frames
from tests.conftest import REPO, make_tracklet, make_tracks


def _csv_rows(path: Path) -> list[tuple]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return [(r[0], int(r[1]), float(r[2]), int(r[3]), int(r[4]), *map(float, r[5:10]),
             *(float(v) if v else None for v in r[10:12])) for r in rows]


def _store_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return [tuple(r) for r in db.execute(
            "SELECT camera, frame, timestamp_s, global_id, track_id, x1, y1, x2, y2, score, "
            "x_m, y_m FROM rows ORDER BY seq")]


def _mtmc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_store_equals_the_csv(sample_store_run):
    out, summary = sample_store_run
    csv_rows = _csv_rows(out / "trajectories.csv")
    assert len(csv_rows) == summary["rows"] > 100
    assert _store_rows(out / STORE_NAME) == csv_rows  # same rows, order, rounding, final ids

    tracks: dict[tuple, list] = defaultdict(list)
    for row in csv_rows:
        tracks[(row[0], row[4])].append(row)
    db = sqlite3.connect(out / STORE_NAME)
    stored = {(c, t): rest for c, t, *rest in db.execute(
        "SELECT camera, track_id, first_frame, last_frame, first_s, last_s, rows, global_id, "
        "embedding, crop_jpeg FROM tracklets")}
    assert set(stored) == set(tracks)
    embedded = unembeddable = short = 0
    fps = {c["id"]: c["fps"] for c in summary["cameras"]}
    for key, rows in tracks.items():
        first_frame, last_frame, first_s, last_s, n, gid, embedding, crop = stored[key]
        assert (first_frame, last_frame, n, gid) == (rows[0][1], rows[-1][1], len(rows),
                                                     rows[0][3]), key
        assert (first_s, last_s) == (rows[0][2], rows[-1][2])
        if embedding is not None:
            vector = np.frombuffer(embedding, "<f4")
            assert vector.size > 0 and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
            embedded += 1
        elif len(rows) < seconds_to_frames(0.5, fps[key[0]]):  # under min_length_s
            short += 1  # not a tracklet: no embedding, an identity of its own
        else:  # a track born on probation whose boxes all score under reid.min_score
            unembeddable += 1
            assert max(row[9] for row in rows) < 0.4, key
        image = cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and 2 <= image.shape[0] <= 128, key
    # every tracklet handed to association has its pooled embedding, unless none of its
    # boxes could be embedded
    assert embedded + unembeddable == summary["tracklets"] and unembeddable < 0.1 * embedded
    assert short == summary["identities_short_tracks"]

    ids: dict[int, set] = defaultdict(set)
    for row in csv_rows:
        ids[row[3]].add(row[0])
    identities = {g: (c, n) for g, c, n in db.execute(
        "SELECT global_id, cameras, rows FROM identities")}
    assert set(identities) == set(ids) and len(ids) == summary["identities"]
    counts = {g: sum(r[3] == g for r in csv_rows) for g in ids}
    assert identities == {g: (len(ids[g]), counts[g]) for g in ids}
    cameras = db.execute("SELECT camera, frames, width, height FROM cameras "
                         "ORDER BY position").fetchall()
    assert cameras == [(c["id"], c["frames"], *c["size_wh"]) for c in summary["cameras"]]
    assert dict(db.execute("SELECT key, value FROM meta"))["state"] == "finished"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    # the store adds no entry to the summary (existing outputs unchanged)
    assert "store" not in summary["outputs"]


def test_query_an_identity(sample_store_run):
    out, _ = sample_store_run
    rows = _csv_rows(out / "trajectories.csv")
    cameras_of: dict[int, set] = defaultdict(set)
    for row in rows:
        cameras_of[row[3]].add(row[0])
    gid = max(cameras_of, key=lambda g: (len(cameras_of[g]), -g))  # most cameras
    spans: dict[str, dict[int, list]] = defaultdict(dict)
    for row in rows:
        if row[3] == gid:
            span = spans[row[0]].setdefault(row[4], [row[2], row[2], 0])
            span[1], span[2] = row[2], span[2] + 1
    expected = {c: sorted((t, s[0], s[1], s[2]) for t, s in tracks.items())
                for c, tracks in spans.items()}

    result = _mtmc("query", out, "--id", gid, "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["global_id"] == gid
    got = {c["camera"]: sorted((s["track_id"], s["from_s"], s["to_s"], s["rows"])
                               for s in c["spans"]) for c in answer["cameras"]}
    assert got == expected
    mine = [r for r in rows if r[3] == gid]
    assert answer["first_seen"]["time_s"] == min(r[2] for r in mine)
    assert answer["last_seen"]["time_s"] == max(r[2] for r in mine)

    text = _mtmc("query", out, "--id", gid)
    assert text.returncode == 0
    assert text.stdout.startswith(f"identity {gid}: {len(expected)} camera(s)")


def test_query_who_a_camera_saw(sample_store_run):
    out, _ = sample_store_run
    rows = [r for r in _csv_rows(out / "trajectories.csv")
            if r[0] == "cam2" and 1.0 <= r[2] <= 2.0]
    expected: dict[int, list] = {}
    for r in rows:
        entry = expected.setdefault(r[3], [r[2], r[2], 0, set()])
        entry[0], entry[1] = min(entry[0], r[2]), max(entry[1], r[2])
        entry[2] += 1
        entry[3].add(r[4])
    assert expected, "the sample has people on cam2 between 1 and 2 s"
    result = _mtmc("query", out, "--camera", "cam2", "--from", "1", "--to", "2", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    got = {p["global_id"]: [p["first_s"], p["last_s"], p["rows"], set(p["track_ids"])]
           for p in answer["identities"]}
    assert got == expected
    text = _mtmc("query", out, "--camera", "cam2", "--from", "1", "--to", "2")
    assert text.stdout.splitlines()[0] == f"cam2, 1 s to 2 s: {len(expected)} identities"


def test_corrections_and_reviewed_export(sample_store_run, tmp_path):
    source, _ = sample_store_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    original = _csv_rows(out / "trajectories.csv")
    with open_run(out) as store:
        identities = store.identities()
        a, b = identities[0]["global_id"], identities[1]["global_id"]
        merge = store.merge(a, b)
        several = next(i for i in identities if len(i["tracklets"]) > 1)
        member = several["tracklets"][-1]
        new_id = store.split(member.camera, member.track_id)
        assert new_id == max(r[3] for r in original) + 1
        with pytest.raises(StoreError, match="no identity"):
            store.merge(a, 10_000)
        path, n = store.export_reviewed()
    assert path == out / "trajectories_reviewed.csv" and n == len(original)

    def expect(row: tuple) -> int:
        if (row[0], row[4]) == (member.camera, member.track_id):
            return new_id
        return a if row[3] == b else row[3]
    reviewed = _csv_rows(path)
    assert [r[3] for r in reviewed] == [expect(r) for r in original]
    assert [r[:3] + r[4:] for r in reviewed] == [r[:3] + r[4:] for r in original]

    with open_run(out) as store:
        store.undo(merge)
        with pytest.raises(StoreError, match="no correction"):
            store.undo(merge)
        store.export_reviewed()
    reviewed = _csv_rows(path)
    assert [r[3] for r in reviewed] == [
        new_id if (r[0], r[4]) == (member.camera, member.track_id) else r[3] for r in original]


@pytest.mark.parametrize("case", ["not a folder", "no store", "corrupt", "old schema"])
@pytest.mark.parametrize("command", [("query", "--id", "1"), ("review", "--export"),
                                     ("review", "--port", "0")])
def test_bad_run_folders_give_one_clear_error(tmp_path, capsys, case, command):
    target = tmp_path / "run"
    if case == "not a folder":
        target.write_text("x")
    else:
        target.mkdir()
        (target / "trajectories.csv").write_text("camera\n")
    if case == "corrupt":
        (target / STORE_NAME).write_bytes(b"this is not sqlite" * 100)
    if case == "old schema":
        with sqlite3.connect(target / STORE_NAME) as db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute("CREATE TABLE tracklets (camera TEXT)")
            db.execute("INSERT INTO meta VALUES ('schema_version', '0')")
    if case == "corrupt" and command[0] == "query":  # once through a real process
        result = _mtmc(command[0], target, *command[1:])
        code, stderr = result.returncode, result.stderr
        assert "Traceback" not in stderr
    else:
        from pipeline.cli import main

        code = main([command[0], str(target), *command[1:]])  # an escaping error fails here
        stderr = capsys.readouterr().err
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtmc: error: ") and str(target) in lines[0]
    assert any(word in lines[0] for word in ("mtmc run", "re-run")), lines[0]


def _frame(camera: str, frame: int, ids, gids, crops=None) -> FrameTracks:
    boxes = [[10.0 * i + 0.123, 0.456, 10.0 * i + 5.789, 20.0] for i in range(len(ids))]
    return FrameTracks(camera_id=camera, frame_index=frame, timestamp_s=frame / 7,
                       size_wh=(100, 100), tracks=make_tracks(ids, boxes), global_ids=gids,
                       crops=crops or {})


def test_online_store_ends_with_the_final_csv_ids(tmp_path):
    """Streamed ids, revisions, then final ids: the store ends equal to
    trajectories_final.csv and its tracklets carry the last ids and the embeddings."""
    rows = TrajectorySink(tmp_path, streamed="trajectories.csv",
                          final="trajectories_final.csv", flush_s=0.0)
    store = StoreSink(tmp_path / STORE_NAME, ["c1", "c2"], association="online",
                      final_csv="trajectories_final.csv")
    sinks = Sinks([rows, RevisionSink(tmp_path / "revisions.csv", flush_s=0.0), store])
    crop = np.full((30, 12, 3), 200, np.uint8)
    sinks.on_rows(_frame("c1", 0, [1, 2], [-1, -1], {1: crop}))
    sinks.on_rows(_frame("c2", 0, [1], [-1]))
    sinks.flush()
    assert len(_store_rows(tmp_path / STORE_NAME)) == 3  # committed at flush
    sinks.on_revisions([Revision(0.5, "c1", 1, -1, 5), Revision(0.5, "c2", 1, -1, 5)])
    sinks.on_rows(_frame("c1", 1, [1, 2], [5, -1]))
    sinks.on_tracklets([make_tracklet("c1", 1, [0, 1], [1.0, 0.0])])
    sinks.on_revisions([Revision(0.9, "c2", 1, 5, 6)])
    sinks.on_identities(Identities(global_of={("c1", 1): 5, ("c2", 1): 6}, tracklets=2))
    sinks.close()
    final = _csv_rows(tmp_path / "trajectories_final.csv")
    assert _store_rows(tmp_path / STORE_NAME) == final
    assert [r[3] for r in final] == [5, -1, 6, 5, -1]
    db = sqlite3.connect(tmp_path / STORE_NAME)
    tracklets = {(c, t): (g, e, j) for c, t, g, e, j in db.execute(
        "SELECT camera, track_id, global_id, embedding, crop_jpeg FROM tracklets")}
    assert {k: v[0] for k, v in tracklets.items()} == {("c1", 1): 5, ("c1", 2): -1,
                                                       ("c2", 1): 6}
    assert np.frombuffer(tracklets[("c1", 1)][1], "<f4").tolist() == [1.0, 0.0]
    assert tracklets[("c1", 1)][2][:2] == b"\xff\xd8" and tracklets[("c1", 2)][2] is None
    assert db.execute("SELECT COUNT(*) FROM revisions").fetchone()[0] == 3
    # spans add up across commits; the sink keeps nothing per track after one (endless runs)
    assert db.execute("SELECT first_frame, last_frame, rows FROM tracklets WHERE camera = "
                      "'c1' AND track_id = 2").fetchone() == (0, 1, 2)
    assert store._spans == {}
    assert db.execute("SELECT global_id, cameras, tracklets, rows FROM identities "
                      "ORDER BY global_id").fetchall() == [(5, 1, 1, 2), (6, 1, 1, 1)]


def test_best_crops_cut_better_views_only_and_forget_ended_tracks():
    image = np.random.default_rng(0).integers(0, 255, (100, 100, 3), np.uint8)
    crops = BestCrops(max_height_px=16)
    box = [[10, 10, 30, 50]]
    first = crops.update("c1", image, make_tracks([1], box, scores=[0.5]))
    assert list(first) == [1] and first[1].shape == (16, 8, 3)
    assert crops.update("c2", image, make_tracks([1], box, scores=[0.5])).keys() == {1}
    assert crops.update("c1", image, make_tracks([1], box, scores=[0.5])) == {}
    assert crops.update("c1", image, make_tracks([1], box, scores=[0.8])).keys() == {1}
    crops.retain("c1", [7])  # track 1 of c1 ended: its rating is forgotten, c2's kept
    assert crops.update("c1", image, make_tracks([1], box, scores=[0.5])).keys() == {1}
    assert crops.update("c2", image, make_tracks([1], box, scores=[0.5])) == {}


def test_store_can_be_switched_off(tmp_path):
    from pipeline.assembly import build_sinks
    from pipeline.association import OfflineAssociator
    from pipeline.config import config_from_dict

    def names(output: dict) -> list[str]:
        config = config_from_dict({"cameras": [{"id": "a", "source": "a.mp4"}],
                                   "output": output}, base_dir=tmp_path, where="t.yaml")
        sinks = build_sinks(config, tmp_path, association=OfflineAssociator(), save_video=False,
                            flush_s=1.0, max_frames=None)
        for sink in sinks:
            sink.abort()
        return [type(s).__name__ for s in sinks]
    assert "StoreSink" in names({})
    assert "StoreSink" not in names({"store": False})


def test_kill_9_keeps_every_committed_row(tmp_path):
    from tests.test_live_rtsp import _data_rows, _mtmc_run, _server_or_skip, _wait

    server = _server_or_skip(tmp_path)
    process, out = _mtmc_run(tmp_path, server)
    store_path = out / STORE_NAME

    def committed() -> int:
        try:
            with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=1) as db:
                return db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
        except sqlite3.Error:
            return 0
    try:
        _wait(lambda: committed() > 20, 90, "rows committed to run.sqlite")
        time.sleep(1.3)  # somewhere between two flushes
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        server.kill()
    assert not (out / "summary.json").exists()
    csv_rows = _csv_rows(out / "trajectories.csv")
    assert _data_rows(out / "trajectories.csv") == len(csv_rows)
    with open_run(out) as store:  # opens cleanly, WAL replayed
        assert store.meta()["state"] == "running"
        assert store.cameras()[0]["frames"] > 0
    db = sqlite3.connect(store_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    stored = _store_rows(store_path)
    # Sinks flush in order (CSV first, then the store), so every committed row is also
    # in the CSV, in the same order with the same ids written then.
    assert len(stored) > 20
    assert stored == csv_rows[:len(stored)]
    with sqlite3.connect(store_path) as db:
        missing = db.execute("SELECT COUNT(*) FROM rows r LEFT JOIN tracklets t ON "
                             "t.camera = r.camera AND t.track_id = r.track_id "
                             "WHERE t.camera IS NULL").fetchone()[0]
    assert missing == 0
    print(f"kill -9: {len(stored)} rows committed to the store, {len(csv_rows)} in the CSV")


def test_review_command_serves_the_page_and_stops_on_sigterm(sample_store_run):
    import signal
    import urllib.request

    out, _ = sample_store_run
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "review", str(out),
                                "--port", "0"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = line.split(": ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert b"app.js" in page.read()
        with urllib.request.urlopen(url + "api/run", timeout=10) as answer:
            data = json.loads(answer.read())
        assert data["state"] == "finished" and data["identities"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
