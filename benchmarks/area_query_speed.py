"""How fast ``mtmc query --area`` answers, by the number of rows in a store.

A store of N rows (tracks of 100 rows at 10 fps on 10 cameras, floor positions uniform
over a 50 m x 50 m site, one hour) is written with the run store's schema; then per N the
median time of ``RunStore.in_area`` over ``--queries`` random 5 m x 5 m rectangles, over
the whole hour and over one minute. The query scans the rows (no spatial index).

    python3 -m benchmarks.area_query_speed --sizes 100000 1000000 3000000
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.export.store import STORE_NAME, create_schema
from pipeline.export.store_read import open_run

TRACK_ROWS = 100


def write_store(folder: Path, n: int, rng: np.random.Generator) -> None:
    """A finished run store with ``n`` rows whose floor positions are known."""
    db = sqlite3.connect(folder / STORE_NAME, isolation_level=None)
    db.execute("BEGIN")
    create_schema(db)
    db.executemany("INSERT INTO cameras (camera, position) VALUES (?, ?)",
                   [(f"c{i}", i) for i in range(10)])
    tracks = -(-n // TRACK_ROWS)
    start = rng.uniform(0, 3600 - TRACK_ROWS / 10, tracks)
    xy = rng.uniform(0, 50, (n, 2)).round(3)
    rows = ((f"c{(i // TRACK_ROWS) % 10}", i % TRACK_ROWS,
             round(float(start[i // TRACK_ROWS] + (i % TRACK_ROWS) / 10), 4), i // TRACK_ROWS,
             i // TRACK_ROWS, 0, 0, 10, 30, 0.9, float(xy[i, 0]), float(xy[i, 1]))
            for i in range(n))
    db.executemany("INSERT INTO rows (camera, frame, timestamp_s, global_id, track_id, x1, y1, "
                   "x2, y2, score, x_m, y_m) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.executemany("INSERT INTO tracklets (camera, track_id, first_s, last_s, rows, global_id) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   ((f"c{t % 10}", t, float(start[t]), float(start[t]) + 9.9, TRACK_ROWS, t)
                    for t in range(tracks)))
    db.execute("UPDATE meta SET value = 'finished' WHERE key = 'state'")
    db.execute("COMMIT")
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| rows | store MB | 5 m x 5 m, whole hour: ms (median) | same, one minute: ms |")
    print("|---|---|---|---|")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            write_store(Path(tmp), n, rng)
            size_mb = (Path(tmp) / STORE_NAME).stat().st_size / 1e6
            timings: dict[str, list[float]] = {"hour": [], "minute": []}
            with open_run(tmp) as store:
                for _ in range(args.queries):
                    x, y, t = rng.uniform(0, 45), rng.uniform(0, 45), rng.uniform(0, 3540)
                    for key, window in (("hour", {}), ("minute", {"from_s": t, "to_s": t + 60})):
                        begin = time.perf_counter()
                        store.in_area(x, y, x + 5, y + 5, **window)
                        timings[key].append(1e3 * (time.perf_counter() - begin))
        print(f"| {n:,} | {size_mb:.0f} | {np.median(timings['hour']):.0f} | "
              f"{np.median(timings['minute']):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
