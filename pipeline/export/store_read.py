"""Reading a run store: queries, review corrections, the reviewed CSV.

:func:`open_run` checks that a folder is a run with a readable ``run.sqlite`` and
raises :class:`StoreError` (a ``ValueError``: one line naming the path and what to do)
otherwise. :class:`RunStore` answers the questions of ``mtmc query`` and the review
page, always through the *effective* identities: the ids the run decided, with the
review's corrections (merge two identities, split a tracklet off) replayed in order,
skipping undone ones. Without corrections the effective ids are the run's.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.export.csv_writer import TrajectoryCsvWriter
from pipeline.export.store import SCHEMA_VERSION, STORE_NAME
from pipeline.types import TrackKey

__all__ = ["REVIEWED_CSV", "RunStore", "StoreError", "TrackletInfo", "open_run"]

REVIEWED_CSV = "trajectories_reviewed.csv"


class StoreError(ValueError):
    """A folder that is not a run, or a store that cannot be read (message says why)."""


@dataclass(frozen=True)
class TrackletInfo:
    """One camera track as the store holds it, with its effective identity."""

    camera: str
    track_id: int
    first_s: float
    last_s: float
    rows: int
    global_id: int  # effective (corrections applied)
    run_global_id: int  # as the run decided
    has_crop: bool


# Version 1 stores (before rows had floor positions) are read as they are.
_READABLE = ("1", str(SCHEMA_VERSION))


def open_run(run_dir: Path | str) -> RunStore:
    """Open the store of the run folder ``run_dir``.

    Raises:
        StoreError: ``run_dir`` is not a folder, has no ``run.sqlite``, or the file is
            not a readable run store.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StoreError(f"{run_dir} is not a folder: pass the output folder of `mtmc run` "
                         "(the --out folder, with trajectories.csv and run.sqlite)")
    path = run_dir / STORE_NAME
    if not path.is_file():
        raise StoreError(f"{run_dir} has no {STORE_NAME}, so it is not the folder of a run "
                         "(or the run had output.store: false): run `mtmc run CONFIG --out "
                         f"{run_dir}` first, or pass the --out folder of an existing run")
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        db.execute("SELECT COUNT(*) FROM tracklets").fetchone()
    except sqlite3.Error as error:
        raise StoreError(f"{path} is not a readable run store ({error}); it is damaged or "
                         f"not written by mtmc: re-run `mtmc run CONFIG --out {run_dir}` to "
                         "write it again") from None
    if version is None or version[0] not in _READABLE:
        db.close()
        raise StoreError(f"{path} has store schema version {version and version[0]}, this "
                         f"mtmc reads versions {', '.join(_READABLE)}: re-run `mtmc run` to "
                         "rewrite it")
    return RunStore(run_dir, db, int(version[0]))


class RunStore:
    """An open run store (use :func:`open_run`); closes with ``with`` or :meth:`close`."""

    def __init__(self, run_dir: Path, db: sqlite3.Connection,
                 version: int = SCHEMA_VERSION) -> None:
        self.run_dir, self.path, self._db = run_dir, run_dir / STORE_NAME, db
        self.version = version
        self._embeddings: tuple[list[TrackKey], np.ndarray] | None = None
        db.execute("PRAGMA busy_timeout = 5000")

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # -- what the run wrote ------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta"))

    def embeddings(self) -> tuple[list[TrackKey], np.ndarray]:
        """The tracks that carry a pooled appearance vector and those vectors:
        ``(keys, (N, D) float32)``; ``(N, 0)`` when none does (re-id off).

        A finished run's vectors never change (corrections change ids, not vectors):
        they are read once per open store, so the review page's "similar" does not
        re-read 100k vectors per click. A running store is read afresh each time.
        """
        if self._embeddings is not None:
            return self._embeddings
        keys, rows = [], []
        for camera, track_id, blob in self._db.execute(
                "SELECT camera, track_id, embedding FROM tracklets "
                "WHERE embedding IS NOT NULL ORDER BY camera, track_id"):
            keys.append((camera, int(track_id)))
            rows.append(np.frombuffer(blob, "<f4"))
        found = (keys, np.stack(rows).astype(np.float32)) if rows else \
            ([], np.zeros((0, 0), np.float32))
        if self.meta().get("state") == "finished":
            self._embeddings = found
        return found

    def cameras(self) -> list[dict[str, Any]]:
        """Cameras in config order: ``camera, width, height, frames, first_s, last_s``."""
        cursor = self._db.execute("SELECT camera, width, height, frames, first_s, last_s "
                                  "FROM cameras ORDER BY position")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def crop_jpeg(self, camera: str, track_id: int) -> bytes | None:
        row = self._db.execute("SELECT crop_jpeg FROM tracklets WHERE camera = ? AND "
                               "track_id = ?", (camera, int(track_id))).fetchone()
        return None if row is None else row[0]

    def _run_ids(self) -> dict[TrackKey, int]:
        return {(c, t): g for c, t, g in
                self._db.execute("SELECT camera, track_id, global_id FROM tracklets")}

    # -- corrections ----------------------------------------------------------------

    def corrections(self) -> list[dict[str, Any]]:
        """Every correction, oldest first (``undone`` ones included)."""
        cursor = self._db.execute("SELECT id, kind, keep_id, absorb_id, camera, track_id, "
                                  "new_id, created_utc, undone FROM corrections ORDER BY id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def effective_ids(self) -> dict[TrackKey, int]:
        """``(camera, track_id) -> global id`` with the corrections applied."""
        ids = self._run_ids()
        for c in self.corrections():
            if c["undone"]:
                continue
            if c["kind"] == "merge":
                ids = {k: (c["keep_id"] if g == c["absorb_id"] else g) for k, g in ids.items()}
            elif (c["camera"], c["track_id"]) in ids:
                ids[(c["camera"], c["track_id"])] = c["new_id"]
        return ids

    def merge(self, keep_id: int, absorb_id: int) -> int:
        """Identity ``absorb_id`` becomes ``keep_id``; returns the correction's id."""
        keep_id, absorb_id = int(keep_id), int(absorb_id)
        present = set(self.effective_ids().values())
        for gid in (keep_id, absorb_id):
            if gid < 0 or gid not in present:
                raise StoreError(f"no identity {gid} in {self.path}")
        if keep_id == absorb_id:
            raise StoreError(f"cannot merge identity {keep_id} with itself")
        return self._add(kind="merge", keep_id=keep_id, absorb_id=absorb_id)

    def split(self, camera: str, track_id: int) -> int:
        """The tracklet leaves its identity and becomes a new one; returns the new id."""
        key = (str(camera), int(track_id))
        ids = self.effective_ids()
        if key not in ids or ids[key] < 0:
            raise StoreError(f"no tracklet {camera}/{track_id} with an identity in {self.path}")
        if sum(g == ids[key] for g in ids.values()) < 2:
            raise StoreError(f"{camera}/{track_id} is the only tracklet of identity "
                             f"{ids[key]}: nothing to split it from")
        used = [g for g in ids.values()] + [g for g, in self._db.execute(
            "SELECT new_id FROM corrections WHERE new_id IS NOT NULL")]
        new_id = max(used, default=0) + 1
        self._add(kind="split", camera=key[0], track_id=key[1], new_id=new_id)
        return new_id

    def undo(self, correction_id: int) -> None:
        """Undo one correction (it stays listed, marked undone)."""
        cursor = self._db.execute("UPDATE corrections SET undone = 1 WHERE id = ? AND "
                                  "undone = 0", (int(correction_id),))
        if cursor.rowcount != 1:
            raise StoreError(f"no correction {correction_id} to undo in {self.path}")

    def _add(self, **values: Any) -> int:
        values["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        names = ", ".join(values)
        cursor = self._db.execute(
            f"INSERT INTO corrections ({names}) VALUES ({', '.join('?' * len(values))})",
            tuple(values.values()))
        return int(cursor.lastrowid)

    # -- questions --------------------------------------------------------------------

    def tracklets(self) -> list[TrackletInfo]:
        """Every track with rows, with its effective identity, by camera and start."""
        ids = self.effective_ids()
        rows = self._db.execute(
            "SELECT t.camera, t.track_id, t.first_s, t.last_s, t.rows, t.global_id, "
            "t.crop_jpeg IS NOT NULL FROM tracklets t JOIN cameras c ON c.camera = t.camera "
            "ORDER BY c.position, t.first_s, t.track_id")
        return [TrackletInfo(camera=c, track_id=t, first_s=f, last_s=la, rows=n,
                             global_id=ids[(c, t)], run_global_id=g, has_crop=bool(crop))
                for c, t, f, la, n, g, crop in rows]

    def identities(self) -> list[dict[str, Any]]:
        """Per effective identity (id >= 0): its tracklets, cameras, first/last seen.

        Returns:
            Dicts ``global_id, cameras (names), first_s, last_s, duration_s, tracklets``
            sorted by id; ``tracklets`` are :class:`TrackletInfo` by camera and start.
        """
        members: dict[int, list[TrackletInfo]] = defaultdict(list)
        for t in self.tracklets():
            if t.global_id >= 0:
                members[t.global_id].append(t)
        out = []
        for gid in sorted(members):
            tracks = members[gid]
            first, last = min(t.first_s for t in tracks), max(t.last_s for t in tracks)
            out.append({"global_id": gid, "cameras": list(dict.fromkeys(t.camera for t in tracks)),
                        "first_s": first, "last_s": last, "duration_s": round(last - first, 4),
                        "tracklets": tracks})
        return out

    def identity(self, global_id: int) -> dict[str, Any]:
        """Where identity ``global_id`` was: per camera its time spans, first/last seen.

        Raises:
            StoreError: No such identity (the message gives the range of ids).
        """
        found = [i for i in self.identities() if i["global_id"] == int(global_id)]
        if not found:
            ids = [i["global_id"] for i in self.identities()]
            known = f"ids run from {min(ids)} to {max(ids)}" if ids else "it has no identities"
            raise StoreError(f"no identity {global_id} in {self.path} ({known})")
        ident = found[0]
        cameras: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for t in ident["tracklets"]:
            cameras[t.camera].append({"track_id": t.track_id, "from_s": t.first_s,
                                      "to_s": t.last_s, "rows": t.rows})
        first = min(ident["tracklets"], key=lambda t: (t.first_s, t.camera))
        last = max(ident["tracklets"], key=lambda t: (t.last_s, t.camera))
        return {"global_id": ident["global_id"],
                "cameras": [{"camera": c, "spans": s} for c, s in cameras.items()],
                "first_seen": {"camera": first.camera, "time_s": first.first_s},
                "last_seen": {"camera": last.camera, "time_s": last.last_s}}

    def at_camera(self, camera: str, from_s: float | None = None,
                  to_s: float | None = None) -> dict[str, Any]:
        """Who camera ``camera`` saw between ``from_s`` and ``to_s`` (inclusive, seconds).

        Returns:
            ``camera, from_s, to_s, identities``: per effective identity (``-1`` = rows of
            tracks without one) ``global_id, first_s, last_s, rows, track_ids``, in order
            of first appearance.

        Raises:
            StoreError: Unknown camera (the message lists the cameras).
        """
        names = [c["camera"] for c in self.cameras()]
        if camera not in names:
            raise StoreError(f"no camera {camera!r} in {self.path}; its cameras: "
                             f"{', '.join(names)}")
        lo = float("-inf") if from_s is None else float(from_s)
        hi = float("inf") if to_s is None else float(to_s)
        ids = self.effective_ids()
        seen: dict[int, dict[str, Any]] = {}
        for tid, ts, gid in self._db.execute(
                "SELECT track_id, timestamp_s, global_id FROM rows WHERE camera = ? AND "
                "timestamp_s >= ? AND timestamp_s <= ? ORDER BY timestamp_s, seq",
                (camera, lo, hi)):
            gid = ids.get((camera, tid), gid)
            entry = seen.setdefault(gid, {"global_id": gid, "first_s": ts, "last_s": ts,
                                          "rows": 0, "track_ids": []})
            entry["last_s"] = ts
            entry["rows"] += 1
            if tid not in entry["track_ids"]:
                entry["track_ids"].append(tid)
        return {"camera": camera, "from_s": from_s, "to_s": to_s,
                "identities": list(seen.values())}

    def _floor_rows(self, what: str) -> None:
        if self.version < 2:
            raise StoreError(f"{self.path} was written before rows had floor positions "
                             f"(store schema version {self.version}), so it cannot answer "
                             f"{what}: re-run `mtmc run` with calibrated cameras")

    def in_area(self, x0: float, y0: float, x1: float, y1: float, from_s: float | None = None,
                to_s: float | None = None) -> dict[str, Any]:
        """Who stood inside the floor rectangle ``[x0, x1] x [y0, y1]`` (metres, inclusive)
        between ``from_s`` and ``to_s`` (seconds, inclusive), on any calibrated camera.

        Returns:
            ``area, from_s, to_s, identities``: per effective identity (``-1`` = rows of
            tracks without one) ``global_id, first_s, last_s, rows, cameras``, in order of
            first appearance inside the area; ``calibrated_rows``: how many rows of the
            time window have a floor position at all.

        Raises:
            StoreError: a store written before floor positions existed.
        """
        self._floor_rows("an area query")
        xs, ys = sorted((float(x0), float(x1))), sorted((float(y0), float(y1)))
        lo = float("-inf") if from_s is None else float(from_s)
        hi = float("inf") if to_s is None else float(to_s)
        ids = self.effective_ids()
        seen: dict[int, dict[str, Any]] = {}
        for camera, tid, ts, gid in self._db.execute(
                "SELECT camera, track_id, timestamp_s, global_id FROM rows WHERE x_m BETWEEN ? "
                "AND ? AND y_m BETWEEN ? AND ? AND timestamp_s >= ? AND timestamp_s <= ? "
                "ORDER BY timestamp_s, seq", (*xs, *ys, lo, hi)):
            gid = ids.get((camera, tid), gid)
            entry = seen.setdefault(gid, {"global_id": gid, "first_s": ts, "last_s": ts,
                                          "rows": 0, "cameras": []})
            entry["first_s"], entry["last_s"] = min(entry["first_s"], ts), max(entry["last_s"], ts)
            entry["rows"] += 1
            if camera not in entry["cameras"]:
                entry["cameras"].append(camera)
        calibrated = self._db.execute(
            "SELECT COUNT(*) FROM rows WHERE x_m IS NOT NULL AND timestamp_s >= ? AND "
            "timestamp_s <= ?", (lo, hi)).fetchone()[0]
        return {"area": [xs[0], ys[0], xs[1], ys[1]], "from_s": from_s, "to_s": to_s,
                "calibrated_rows": int(calibrated), "identities": list(seen.values())}

    def floor_paths(self) -> dict[int, dict[str, list]]:
        """Per effective identity, its floor positions over time from every calibrated
        camera: ``{global_id: {"t": [...], "x": [...], "y": [...], "camera": [...]}}``,
        in time order (identities without any floor position are left out; ``-1`` holds
        the rows of tracks without an identity)."""
        if self.version < 2:
            return {}
        ids = self.effective_ids()
        paths: dict[int, dict[str, list]] = {}
        for camera, tid, ts, gid, x, y in self._db.execute(
                "SELECT camera, track_id, timestamp_s, global_id, x_m, y_m FROM rows WHERE "
                "x_m IS NOT NULL ORDER BY timestamp_s, seq"):
            path = paths.setdefault(ids.get((camera, tid), gid),
                                    {"t": [], "x": [], "y": [], "camera": []})
            path["t"].append(ts)
            path["x"].append(x)
            path["y"].append(y)
            path["camera"].append(camera)
        return paths

    def export_reviewed(self, path: Path | None = None) -> tuple[Path, int]:
        """Write the rows with the effective ids as a trajectory CSV (same schema).

        Returns:
            ``(path, rows written)``; default path ``RUN_DIR/trajectories_reviewed.csv``.
        """
        path = Path(path) if path is not None else self.run_dir / REVIEWED_CSV
        ids = self.effective_ids()
        temporary = path.with_name(path.name + ".part")
        rows = 0
        with TrajectoryCsvWriter(temporary, flush_rows=4096, flush_s=3600.0) as writer:
            floor = "x_m, y_m" if self.version >= 2 else "NULL, NULL"
            cursor = self._db.execute("SELECT camera, frame, timestamp_s, global_id, track_id, "
                                      f"x1, y1, x2, y2, score, {floor} FROM rows ORDER BY seq")
            while batch := cursor.fetchmany(4096):
                rows += writer.write_rows(
                    (c, f, ts, ids.get((c, t), g), t, *rest)
                    for c, f, ts, g, t, *rest in batch)
        os.replace(temporary, path)
        return path, rows
