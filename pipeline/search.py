"""Search by example: which of a run's tracks look like this person?

``mtmc search RUN_DIR --image crop.jpg`` embeds the crop with the re-id model the run
used (recorded in ``run.sqlite``'s ``meta``: weights path and SHA-256, backend, precision,
declared input) and ranks the run's tracks by cosine similarity to their pooled
appearance vectors, with each track's camera, time span and effective identity (review
corrections applied). Exact search: one matrix-vector product over every stored vector
(``benchmarks/search_speed.py`` times it; docs/SCALE.md).

A run whose model cannot be loaded as it was (file moved or changed: its SHA-256 differs)
is an error that says so, never a ranking made in another model's space.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.export.store_read import RunStore, StoreError
from pipeline.reid.embedder import CropEmbedder, l2_normalise
from pipeline.reid.runtimes import model_digest

__all__ = ["Match", "rank", "search", "similar_tracks", "query_embedder"]


@dataclass(frozen=True)
class Match:
    """One track of the run, ranked."""

    similarity: float  # cosine, 1 = same direction
    camera: str
    track_id: int
    global_id: int  # effective (review corrections applied)
    first_s: float
    last_s: float
    rows: int

    def as_dict(self) -> dict:
        return asdict(self)


def rank(query: np.ndarray, unit: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the ``top`` rows of ``unit`` (N, D, rows of
    length 1: ``l2_normalise``, done once per store) most like ``query`` (D,), best
    first (exact: one matrix-vector product)."""
    q = np.asarray(query, np.float32) / max(float(np.linalg.norm(query)), 1e-12)
    sim = unit @ q
    top = min(top, len(sim))
    best = np.argpartition(-sim, top - 1)[:top] if top < len(sim) else np.arange(len(sim))
    best = best[np.argsort(-sim[best], kind="stable")]
    return best, sim[best]


def _matches(store: RunStore, keys: list, best: np.ndarray, sim: np.ndarray) -> list[Match]:
    info = {(t.camera, t.track_id): t for t in store.tracklets()}
    return [Match(similarity=round(float(s), 4), camera=keys[i][0], track_id=keys[i][1],
                  global_id=info[keys[i]].global_id, first_s=info[keys[i]].first_s,
                  last_s=info[keys[i]].last_s, rows=info[keys[i]].rows)
            for i, s in zip(best, sim, strict=True)]


def similar_tracks(store: RunStore, camera: str, track_id: int, *, top: int = 10
                   ) -> list[Match]:
    """The run's other tracks most like track ``(camera, track_id)``, by their stored
    vectors (no model needed: both sides were embedded by the run).

    Raises:
        StoreError: the track is unknown or has no vector (too short to associate).
    """
    if top < 1:
        raise StoreError(f"top must be at least 1, got {top}")
    keys, vectors = store.embeddings()
    key = (camera, int(track_id))
    if key not in keys:
        known = any(t.camera == camera and t.track_id == key[1] for t in store.tracklets())
        raise StoreError(f"track {camera}/{track_id} " + (
            "has no appearance vector (too short to be associated)" if known else
            "is not in this run"))
    index = keys.index(key)
    unit = l2_normalise(vectors)
    best, sim = rank(unit[index], unit, top + 1)
    keep = best != index
    return _matches(store, keys, best[keep][:top], sim[keep][:top])


def query_embedder(store: RunStore):
    """A CropEmbedder exactly like the run's (raises StoreError when it cannot be)."""
    meta = store.meta()
    if "reid" not in meta:
        raise StoreError(f"{store.path} records no re-id model: the run had re-id off (or "
                         "was written by an older mtmc), so its tracks have no appearance "
                         "to search; re-run it with re-id on")
    reid = json.loads(meta["reid"])
    weights = Path(reid["weights"])
    if not weights.is_file():
        raise StoreError(f"the run's re-id weights {weights} are gone; search needs the "
                         "model that embedded the run: put the file back at that path")
    if reid.get("sha256") and model_digest(weights) != reid["sha256"]:
        raise StoreError(f"{weights} is not the file the run was embedded with (SHA-256 "
                         "differs): a query embedded with it would be compared in another "
                         "model's space; restore that file or re-run the footage")
    return CropEmbedder(model=reid["model"], weights=weights, backend=reid["backend"],
                        precision=reid["precision"], input_spec=reid.get("input"))


def search(run_dir: Path | str, image: Path | str, *, top: int = 10) -> list[Match]:
    """The run's tracks most like the person in ``image`` (a crop of one person).

    Raises:
        StoreError: not a run, no re-id recorded, the model file missing or changed.
        FileNotFoundError / ValueError: ``image`` missing or not an image.
    """
    import cv2

    from pipeline.export.store_read import open_run

    image = Path(image)
    if not image.is_file():
        raise FileNotFoundError(f"query image {image} not found: pass a crop of one person "
                                "(jpg or png)")
    crop = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if crop is None:
        raise ValueError(f"{image} is not an image OpenCV can read: pass a jpg or png crop "
                         "of one person")
    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    with open_run(run_dir) as store:
        embedder = query_embedder(store)
        keys, vectors = store.embeddings()
        if not keys:
            return []
        query = embedder.embed_crops([crop])[0]
        if vectors.shape[1] != query.shape[0]:
            raise StoreError(f"{store.path}: stored vectors are {vectors.shape[1]}-d, the "
                             f"run's model gives {query.shape[0]}-d: the store is damaged")
        best, sim = rank(query, l2_normalise(vectors), top)
        return _matches(store, keys, best, sim)
