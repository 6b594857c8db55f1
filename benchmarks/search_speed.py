"""How fast ``mtmc search`` ranks a store's tracks, by store size.

A store of N tracks with D-dimensional pooled vectors (random unit vectors: the exact
search's cost does not depend on their values) is written with the run store's schema;
then, per N: the time to read the vectors out of ``run.sqlite`` and normalise them (once
per search command)
and the median time of one exact ranking (``pipeline.search.rank``, top 10) over
``--queries`` random queries. The query's own embedding (one model call, ~2-5 ms) and the
model load are not included.

    python3 -m benchmarks.search_speed --sizes 1000 10000 100000 [--dim 512]
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
from pipeline.reid.embedder import l2_normalise
from pipeline.search import rank


def write_store(folder: Path, vectors: np.ndarray) -> None:
    """A run store whose tracklets table holds ``vectors`` (camera c0..c9)."""
    db = sqlite3.connect(folder / STORE_NAME, isolation_level=None)
    db.execute("BEGIN")
    create_schema(db)
    db.executemany("INSERT INTO cameras (camera, position) VALUES (?, ?)",
                   [(f"c{i}", i) for i in range(10)])
    db.executemany(
        "INSERT INTO tracklets (camera, track_id, first_s, last_s, rows, global_id, "
        "embedding) VALUES (?, ?, 0, 1, 10, ?, ?)",
        ((f"c{i % 10}", i, i, v.astype("<f4").tobytes()) for i, v in enumerate(vectors)))
    db.execute("COMMIT")
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| tracks | read vectors from run.sqlite, s | exact ranking, ms (median) |")
    print("|---|---|---|")
    for n in args.sizes:
        vectors = rng.normal(size=(n, args.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with tempfile.TemporaryDirectory() as tmp:
            write_store(Path(tmp), vectors)
            start = time.perf_counter()
            with open_run(tmp) as store:
                _, loaded = store.embeddings()
            loaded = l2_normalise(loaded)
            read_s = time.perf_counter() - start
        assert loaded.shape == vectors.shape
        times = []
        for query in rng.normal(size=(args.queries, args.dim)).astype(np.float32):
            start = time.perf_counter()
            rank(query, loaded, 10)
            times.append(time.perf_counter() - start)
        print(f"| {n:,} | {read_s:.2f} | {1000 * float(np.median(times)):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
