"""The review page: a local web server over one run's store (``mtmc review RUN_DIR``).

Standard library only (``http.server``); the page's HTML, CSS and JavaScript ship in
``pipeline/review_assets/`` (package data), so it works offline and loads nothing from
the network. Endpoints (JSON unless stated):

``GET /``, ``/app.js``, ``/style.css``   the page (assets)
``GET /api/run``                         cameras, time range, identities with their
                                         tracklets (effective ids), corrections
``GET /api/crop?camera=C&track=T``       the tracklet's best view (JPEG)
``GET /api/similar?camera=C&track=T&top=N``  the run's tracks most like that one
                                         (``pipeline.search.similar_tracks``)
``GET /api/floor``                       per identity its floor path in metres (calibrated
                                         cameras), its colour, and the floor plan's
                                         placement (null without one)
``GET /api/floor_plan``                  the floor-plan image
``POST /api/merge``  ``{"keep": 7, "absorb": 12}``   identity 12 becomes 7
``POST /api/split``  ``{"camera": "cam2", "track_id": 5}``   the tracklet becomes a new identity
``POST /api/undo``   ``{"id": 3}``       undo correction 3

Corrections go to the store's ``corrections`` table at once; ``mtmc review RUN_DIR
--export`` applies them (``trajectories_reviewed.csv``).
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipeline.export.store_read import RunStore, StoreError, open_run

__all__ = ["ReviewServer", "floor_data", "make_server", "page_data"]

logger = logging.getLogger(__name__)

_ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
           "/index.html": ("index.html", "text/html; charset=utf-8"),
           "/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/style.css": ("style.css", "text/css; charset=utf-8")}


def _asset(name: str) -> bytes:
    return (resources.files("pipeline") / "review_assets" / name).read_bytes()


# Points per identity path sent to the page (longer paths are thinned evenly).
_FLOOR_POINTS = 400


def _floor_plan(store: RunStore) -> dict[str, Any] | None:
    text = store.meta().get("floor_plan")
    return None if not text else json.loads(text)


def floor_data(store: RunStore) -> dict[str, Any]:
    """The floor view's data: ``plan`` (image size in pixels, ``origin_m``, ``px_per_m``,
    ``y_up``; None without a plan) and ``paths``: per effective identity with floor
    positions, ``global_id``, ``colour`` (the videos' colour, CSS hex) and ``points``
    ``[[t, x_m, y_m], ...]`` in time order (at most a few hundred)."""
    from pipeline.export.palette import color_rgb01

    plan = _floor_plan(store)
    if plan is not None:
        from PIL import Image

        try:
            with Image.open(plan["image"]) as img:
                plan = {**plan, "width_px": img.width, "height_px": img.height}
        except OSError as error:
            logger.warning("floor plan %s cannot be read (%s): paths drawn on a grid",
                           plan["image"], error)
            plan = None
    paths = []
    for gid, path in sorted(store.floor_paths().items()):
        if gid < 0:
            continue
        step = max(1, -(-len(path["t"]) // _FLOOR_POINTS))
        colour = "#" + "".join(f"{round(255 * c):02x}" for c in color_rgb01(gid))
        paths.append({"global_id": gid, "colour": colour,
                      "points": [[round(t, 3), round(x, 3), round(y, 3)] for t, x, y in
                                 zip(path["t"][::step], path["x"][::step],
                                     path["y"][::step], strict=True)]})
    return {"plan": None if plan is None else {k: v for k, v in plan.items() if k != "image"},
            "paths": paths}


def page_data(store: RunStore) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    cameras = store.cameras()
    starts = [c["first_s"] for c in cameras if c["first_s"] is not None]
    ends = [c["last_s"] for c in cameras if c["last_s"] is not None]
    identities = []
    for ident in store.identities():
        identities.append({
            **{k: ident[k] for k in ("global_id", "cameras", "first_s", "last_s",
                                     "duration_s")},
            "tracklets": [{"camera": t.camera, "track_id": t.track_id, "first_s": t.first_s,
                           "last_s": t.last_s, "rows": t.rows, "crop": t.has_crop,
                           "run_global_id": t.run_global_id} for t in ident["tracklets"]]})
    return {"run": str(store.run_dir), "state": store.meta().get("state"),
            "cameras": [c["camera"] for c in cameras],
            "t0": min(starts, default=0.0), "t1": max(ends, default=0.0),
            "identities": identities, "corrections": store.corrections()}


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        logger.debug("review: " + format, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        if url.path in _ASSETS:
            name, content_type = _ASSETS[url.path]
            self._send(HTTPStatus.OK, _asset(name), content_type)
        elif url.path == "/api/run":
            with self.server.lock:
                self._json(page_data(self.server.store))
        elif url.path == "/api/similar":
            self._similar(parse_qs(url.query))
        elif url.path == "/api/floor":
            with self.server.lock:
                self._json(floor_data(self.server.store))
        elif url.path == "/api/floor_plan":
            with self.server.lock:
                plan = _floor_plan(self.server.store)
            image = Path(plan["image"]) if plan else None
            if image is None or not image.is_file():
                self._json({"error": "this run has no floor-plan image"}, HTTPStatus.NOT_FOUND)
            else:
                kind = "image/png" if image.suffix.lower() == ".png" else "image/jpeg"
                self._send(HTTPStatus.OK, image.read_bytes(), kind)
        elif url.path == "/api/crop":
            query = parse_qs(url.query)
            try:
                camera, track = query["camera"][0], int(query["track"][0])
            except (KeyError, ValueError):
                self._json({"error": "crop needs camera= and track="}, HTTPStatus.BAD_REQUEST)
                return
            with self.server.lock:
                jpeg = self.server.store.crop_jpeg(camera, track)
            if jpeg is None:
                self._json({"error": f"no crop of {camera}/{track}"}, HTTPStatus.NOT_FOUND)
            else:
                self._send(HTTPStatus.OK, jpeg, "image/jpeg")
        else:
            self._json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND)

    def _similar(self, query: dict[str, list[str]]) -> None:
        from pipeline.search import similar_tracks

        try:
            camera, track = query["camera"][0], int(query["track"][0])
            top = int(query.get("top", ["12"])[0])
        except (KeyError, ValueError):
            self._json({"error": "similar needs camera= and track= (and optional top=)"},
                       HTTPStatus.BAD_REQUEST)
            return
        try:
            with self.server.lock:
                matches = similar_tracks(self.server.store, camera, track, top=top)
        except StoreError as error:
            self._json({"error": str(error)}, HTTPStatus.BAD_REQUEST)
            return
        self._json({"camera": camera, "track_id": track,
                    "matches": [m.as_dict() for m in matches]})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = urlsplit(self.path).path
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            store = self.server.store
            with self.server.lock:
                if path == "/api/merge":
                    result: dict[str, Any] = {"correction": store.merge(body["keep"],
                                                                        body["absorb"])}
                elif path == "/api/split":
                    result = {"new_id": store.split(body["camera"], body["track_id"])}
                elif path == "/api/undo":
                    store.undo(body["id"])
                    result = {"undone": int(body["id"])}
                else:
                    self._json({"error": f"no such action: {path}"}, HTTPStatus.NOT_FOUND)
                    return
        except (KeyError, TypeError, ValueError) as error:  # StoreError is a ValueError
            message = str(error) if isinstance(error, StoreError) else f"bad request: {error!r}"
            self._json({"error": message}, HTTPStatus.BAD_REQUEST)
            return
        self._json(result)


class ReviewServer(ThreadingHTTPServer):
    """The page's HTTP server, bound to ``host:port``, serving one open store."""

    daemon_threads = True

    def __init__(self, store: RunStore, host: str, port: int) -> None:
        self.store = store
        self.lock = threading.Lock()  # one sqlite connection, requests on threads
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.store.close()


def make_server(run_dir: Path | str, *, host: str = "127.0.0.1", port: int = 8765) -> ReviewServer:
    """A review server for ``run_dir`` (port 0: any free port; see ``.url``).

    Raises:
        StoreError: ``run_dir`` is not a run with a readable store.
        OSError: The port is taken.
    """
    store = open_run(run_dir)
    try:
        return ReviewServer(store, host, port)
    except OSError as error:
        store.close()
        raise OSError(f"cannot serve the review page on {host}:{port} ({error.strerror}); "
                      "choose another --port") from None
