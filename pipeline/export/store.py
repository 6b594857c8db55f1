"""The run store: ``run.sqlite`` in a run's folder (stdlib ``sqlite3``, WAL journal).

One file that answers "where was this person, on which cameras, when?" without
re-reading CSV files, and that the review page corrects. Written by
:class:`StoreSink` while the run goes on: rows are inserted and committed in one small
transaction per flush (``flush_s``), so a killed run (even ``kill -9``) keeps every
committed row and the file opens cleanly (WAL replays or drops the unfinished
transaction). At the end of the run the rows get the final global ids, exactly as
``rewrite_global_ids`` gives them to the final trajectory CSV.

Schema (version 2; documented for users in docs/STORE.md)::

    meta(key TEXT PRIMARY KEY, value TEXT)
        schema_version, state (running | finished | aborted), association,
        trajectories (the final CSV's name), started_utc, reid (JSON: the re-id model
        the embeddings come from; absent when re-id was off), floor_plan (JSON: image,
        origin_m, px_per_m, y_up; absent without one)
    cameras(camera TEXT PRIMARY KEY, position INTEGER, width INTEGER, height INTEGER,
            frames INTEGER, first_s REAL, last_s REAL)
    rows(seq INTEGER PRIMARY KEY, camera TEXT, frame INTEGER, timestamp_s REAL,
         global_id INTEGER, track_id INTEGER, x1 REAL, y1 REAL, x2 REAL, y2 REAL,
         score REAL, x_m REAL, y_m REAL)  -- the trajectory CSV, in its order and rounding
                                          -- (x_m, y_m: floor position, NULL if unknown)
    tracklets(camera TEXT, track_id INTEGER, first_frame INTEGER, last_frame INTEGER,
              first_s REAL, last_s REAL, rows INTEGER, global_id INTEGER,
              embedding BLOB, quality REAL, crop_jpeg BLOB,
              PRIMARY KEY (camera, track_id))
        -- every track with rows; embedding: float32 little-endian pooled appearance
        -- (NULL for tracks too short to be associated); crop_jpeg: its best view
    identities(global_id INTEGER PRIMARY KEY, cameras INTEGER, tracklets INTEGER,
               rows INTEGER, first_s REAL, last_s REAL)       -- written at the end
    revisions(seq INTEGER PRIMARY KEY, time_s REAL, camera TEXT, track_id INTEGER,
              old_global_id INTEGER, new_global_id INTEGER)   -- online runs
    corrections(id INTEGER PRIMARY KEY, kind TEXT, keep_id INTEGER, absorb_id INTEGER,
                camera TEXT, track_id INTEGER, new_id INTEGER, created_utc TEXT,
                undone INTEGER)           -- written by the review page only
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.export.crops import encode_jpeg
from pipeline.export.sinks import Sink
from pipeline.types import FrameTracks, Identities, Revision, TrackKey, Tracklet

__all__ = ["SCHEMA_VERSION", "STORE_NAME", "StoreSink", "create_schema"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
STORE_NAME = "run.sqlite"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE cameras (camera TEXT PRIMARY KEY, position INTEGER, width INTEGER,
    height INTEGER, frames INTEGER NOT NULL DEFAULT 0, first_s REAL, last_s REAL);
CREATE TABLE rows (seq INTEGER PRIMARY KEY, camera TEXT NOT NULL, frame INTEGER NOT NULL,
    timestamp_s REAL NOT NULL, global_id INTEGER NOT NULL, track_id INTEGER NOT NULL,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL, score REAL, x_m REAL, y_m REAL);
CREATE INDEX rows_track ON rows (camera, track_id);
CREATE INDEX rows_time ON rows (camera, timestamp_s);
CREATE TABLE tracklets (camera TEXT NOT NULL, track_id INTEGER NOT NULL,
    first_frame INTEGER, last_frame INTEGER, first_s REAL, last_s REAL, rows INTEGER,
    global_id INTEGER NOT NULL DEFAULT -1, embedding BLOB, quality REAL, crop_jpeg BLOB,
    PRIMARY KEY (camera, track_id));
CREATE TABLE identities (global_id INTEGER PRIMARY KEY, cameras INTEGER, tracklets INTEGER,
    rows INTEGER, first_s REAL, last_s REAL);
CREATE TABLE revisions (seq INTEGER PRIMARY KEY, time_s REAL, camera TEXT, track_id INTEGER,
    old_global_id INTEGER, new_global_id INTEGER);
CREATE TABLE corrections (id INTEGER PRIMARY KEY, kind TEXT NOT NULL
    CHECK (kind IN ('merge', 'split')), keep_id INTEGER, absorb_id INTEGER, camera TEXT,
    track_id INTEGER, new_id INTEGER, created_utc TEXT, undone INTEGER NOT NULL DEFAULT 0);
"""


def create_schema(connection: sqlite3.Connection) -> None:
    """Create the tables of an empty store (schema version :data:`SCHEMA_VERSION`)."""
    # statement by statement: executescript() would commit the caller's transaction
    for statement in filter(str.strip, _SCHEMA.split(";")):
        connection.execute(statement)
    connection.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


class _Span:
    """What the rows since the last commit tell about one track."""

    __slots__ = ("first_frame", "last_frame", "first_s", "last_s", "rows", "global_id")

    def __init__(self, frame: int, time_s: float, global_id: int) -> None:
        self.first_frame = self.last_frame = frame
        self.first_s = self.last_s = time_s
        self.rows = 0
        self.global_id = global_id


class StoreSink(Sink):
    """Writes ``run.sqlite`` (schema in the module docstring).

    Args:
        path: The store file; an existing one is replaced (a run folder is rewritten).
        camera_ids: The run's cameras, in config order.
        association: The association mode's name (kept in ``meta``).
        final_csv: Name of the run's final trajectory CSV (kept in ``meta``).
        reid: The re-id model that made the tracklets' embeddings (``meta`` key
            ``reid``, JSON: model, weights, sha256, backend, precision, input); what
            ``mtmc search`` must embed a query with. None = re-id off.
        floor_plan: The floor-plan image the review page draws floor paths on (``meta``
            key ``floor_plan``, JSON: image as an absolute path, origin_m, px_per_m,
            y_up). None = a plain metric grid.
    """

    def __init__(self, path: Path, camera_ids: Sequence[str], *, association: str,
                 final_csv: str, reid: Mapping[str, Any] | None = None,
                 floor_plan: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives the process being
        # killed (not a power cut), without an fsync per commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("BEGIN")
        create_schema(self._db)
        self._db.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("state", "running"), ("association", association), ("trajectories", final_csv),
            ("started_utc", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))]
            + ([("reid", json.dumps(dict(reid), sort_keys=True))] if reid else [])
            + ([("floor_plan", json.dumps(dict(floor_plan), sort_keys=True))]
               if floor_plan else []))
        self._db.executemany("INSERT INTO cameras (camera, position) VALUES (?, ?)",
                             [(c, i) for i, c in enumerate(camera_ids)])
        self._db.execute("COMMIT")
        self._rows: list[tuple] = []
        # Tracks with rows since the last commit (emptied by each commit, so an endless
        # run keeps no state per past track; the table adds the rows up).
        self._spans: dict[TrackKey, _Span] = {}
        self._crops: dict[TrackKey, np.ndarray] = {}
        self._tracklets: list[Tracklet] = []
        self._revisions: list[Revision] = []
        self._cameras: dict[str, list] = {}  # camera -> [width, height, frames, first, last]
        self._identities: Identities | None = None
        self._closed = False

    def on_rows(self, rows: FrameTracks) -> None:
        cid, frame, ts = rows.camera_id, int(rows.frame_index), float(rows.timestamp_s)
        camera = self._cameras.get(cid)
        if camera is None:
            camera = self._cameras[cid] = [*rows.size_wh, 0, ts, ts]
        camera[2] += 1
        camera[4] = ts
        time_s = round(ts, 4)  # as the CSV prints it, so the store equals the CSV
        boxes = np.round(rows.tracks.xyxy.astype(np.float64), 2).tolist()
        scores = np.round(rows.tracks.score.astype(np.float64), 4).tolist()
        floor = ([(None, None)] * len(rows) if rows.floor_xy is None else
                 [(x, y) if np.isfinite(x) and np.isfinite(y) else (None, None)
                  for x, y in np.round(rows.floor_xy, 3).tolist()])
        for tid, gid, box, score, xy in zip(rows.tracks.track_id.tolist(),
                                            rows.global_ids.tolist(), boxes, scores, floor,
                                            strict=True):
            self._rows.append((cid, frame, time_s, gid, tid, *box, score, *xy))
            key = (cid, tid)
            span = self._spans.get(key)
            if span is None:
                span = self._spans[key] = _Span(frame, time_s, gid)
            span.last_frame, span.last_s, span.global_id = frame, time_s, gid
            span.rows += 1
        for tid, crop in rows.crops.items():
            self._crops[(cid, int(tid))] = crop

    def on_revisions(self, revisions: Sequence[Revision]) -> None:
        self._revisions.extend(revisions)

    def on_tracklets(self, tracklets: Sequence[Tracklet]) -> None:
        self._tracklets.extend(tracklets)

    def on_identities(self, identities: Identities) -> None:
        self._identities = identities

    def flush(self) -> None:
        """Commit what arrived since the last flush in one transaction."""
        if self._closed:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            self._write_pending(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _write_pending(self, db: sqlite3.Connection) -> None:
        if self._rows:
            db.executemany("INSERT INTO rows (camera, frame, timestamp_s, global_id, track_id, "
                           "x1, y1, x2, y2, score, x_m, y_m) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                           self._rows)
            self._rows = []
        if self._spans:
            spans = [(cid, tid, s.first_frame, s.last_frame, s.first_s, s.last_s, s.rows,
                      s.global_id) for (cid, tid), s in self._spans.items()]
            db.executemany(
                "INSERT INTO tracklets (camera, track_id, first_frame, last_frame, first_s, "
                "last_s, rows, global_id) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (camera, "
                "track_id) DO UPDATE SET last_frame = excluded.last_frame, last_s = "
                "excluded.last_s, rows = rows + excluded.rows, global_id = excluded.global_id",
                spans)
            self._spans = {}
        if self._revisions:
            db.executemany("INSERT INTO revisions (time_s, camera, track_id, old_global_id, "
                           "new_global_id) VALUES (?,?,?,?,?)",
                           [(r.time_s, r.camera, r.track_id, r.old_global_id, r.new_global_id)
                            for r in self._revisions])
            db.executemany("UPDATE tracklets SET global_id = ? WHERE camera = ? AND "
                           "track_id = ?", [(r.new_global_id, r.camera, r.track_id)
                                            for r in self._revisions])
            self._revisions = []
        if self._tracklets:
            db.executemany("UPDATE tracklets SET embedding = ?, quality = ? WHERE camera = ? "
                           "AND track_id = ?",
                           [(t.embedding.astype("<f4").tobytes() if t.embedding.size else None,
                             float(t.quality), t.camera_id, int(t.track_id))
                            for t in self._tracklets])
            self._tracklets = []
        if self._crops:
            db.executemany("UPDATE tracklets SET crop_jpeg = ? WHERE camera = ? AND "
                           "track_id = ?", [(encode_jpeg(crop), cid, tid)
                                            for (cid, tid), crop in self._crops.items()])
            self._crops = {}
        if self._cameras:
            db.executemany("UPDATE cameras SET width = ?, height = ?, frames = ?, first_s = ?, "
                           "last_s = ? WHERE camera = ?",
                           [(*v, cid) for cid, v in self._cameras.items()])

    def close(self) -> dict[str, Any]:
        """Commit the rest, give every row its final id, mark the store finished.

        Returns no summary entry: the summary's ``outputs`` stay as they were.
        """
        if self._closed:
            return {}
        db = self._db
        db.execute("BEGIN")
        try:
            self._write_pending(db)
            if self._identities is not None:
                self._finalise(db, self._identities)
            db.execute("UPDATE meta SET value = 'finished' WHERE key = 'state'")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self.abort()
            raise
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._shut()
        return {}

    @staticmethod
    def _finalise(db: sqlite3.Connection, identities: Identities) -> None:
        # Same rule as rewrite_global_ids: a track missing from the map gets -1.
        db.execute("UPDATE tracklets SET global_id = -1")
        db.executemany("UPDATE tracklets SET global_id = ? WHERE camera = ? AND track_id = ?",
                       [(gid, cid, tid) for (cid, tid), gid in identities.global_of.items()])
        db.execute("UPDATE rows SET global_id = (SELECT t.global_id FROM tracklets t WHERE "
                   "t.camera = rows.camera AND t.track_id = rows.track_id)")
        db.execute("DELETE FROM identities")
        db.execute("INSERT INTO identities SELECT global_id, COUNT(DISTINCT camera), COUNT(*), "
                   "SUM(rows), MIN(first_s), MAX(last_s) FROM tracklets WHERE global_id >= 0 "
                   "GROUP BY global_id")

    def abort(self) -> None:
        """Commit what is complete and mark the store ``aborted``."""
        if self._closed:
            return
        try:
            self.flush()
            self._db.execute("UPDATE meta SET value = 'aborted' WHERE key = 'state'")
        except sqlite3.Error:
            logger.exception("run store %s: could not commit the last rows", self.path)
        self._shut()

    def _shut(self) -> None:
        self._closed = True
        self._db.close()
