"""Live sources (RTSP, HTTP, webcams) that survive outages, and URL redaction.

A ``StreamSource`` reads its camera on a background thread into a small bounded queue,
so a stalled camera never blocks the pipeline and a slow pipeline never grows memory:
when the queue is full the OLDEST frame is dropped and counted. On any failure (open
failure, read error or timeout, end of stream, a stale frame after a stall) the capture
is released and reopened with exponential backoff and jitter, forever, until
``close()``. Health counters (``health()``) say how the camera has been doing.

Frames are timestamped from the monotonic wall clock, in seconds since ``epoch_s``
(the run start, shared by all cameras of a run), so cameras align by time, not by
frame index. ``Frame.index`` counts every frame read from the camera since the source
was opened (across reconnects), so dropped frames leave gaps in the indices.

Stale frames: after a stall some back ends return the previous frame again, or a
frame left over in the decoder. A frame whose stream position (``CAP_PROP_POS_MSEC``)
did not advance on the same connection is a duplicate and is not delivered. Once a
connection has delivered a frame, a read that blocks for ``stall_s`` or longer (at
least three frame periods) is a stall whatever it returns: the frame is discarded as
stale and the camera reconnected. So is a run of duplicates lasting ``read_timeout_s``.

Credentials never leave this module in clear: every log line, exception message and
``health()`` value shows the URL through :func:`redact_url`, and OpenCV's and FFmpeg's
own log lines, which could print the URL as given, are silenced
(:mod:`pipeline.sources.native_logs`).
"""

from __future__ import annotations

import collections
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from pipeline.sources.base import FrameSource, check_fps
from pipeline.sources.native_logs import quiet_native_logs
from pipeline.types import Frame

__all__ = ["DEFAULT_OPEN_TIMEOUT_S", "RTSP_TRANSPORTS", "STREAM_SCHEMES", "StreamOptions",
           "StreamSource", "first_frame_wait_s", "is_stream_uri", "redact_url"]

logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "webcam")
"""URI schemes ``open_source`` hands to ``StreamSource`` (``webcam://N`` = device N)."""

_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:password|passwd|pass|pwd|token|access_token|key|apikey|api_key|auth|"
    r"secret|signature|sig)=)[^&;#]*"
)
RTSP_TRANSPORTS = ("tcp", "udp", "udp_multicast", "http", "https")
"""Values of ``rtsp_transport`` (FFmpeg's RTSP lower transport)."""

_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # read by OpenCV at every open
_OPEN_LOCK = threading.Lock()  # ... and process-global, so opens take turns
_DEFAULT_FPS = 10.0
DEFAULT_OPEN_TIMEOUT_S = 10.0


def redact_url(uri: object) -> str:
    """``uri`` as text with any password (and secret-looking query values) replaced.

    ``rtsp://user:pass@host:554/a?token=x`` -> ``rtsp://user:***@host:554/a?token=***``.
    Non-URL values (paths, webcam indices) are returned unchanged as text.
    """
    text = str(uri)
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        text = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        # Unparseable: blank everything between the scheme and the last '@'.
        scheme, rest = text.split("://", 1)
        if "@" in rest.split("/", 1)[0]:
            text = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return _SECRET_QUERY.sub(r"\1***", text)


def is_stream_uri(uri: object) -> bool:
    """True for stream URLs (``STREAM_SCHEMES``), webcam indices and ``/dev/video*``."""
    if isinstance(uri, int):
        return True
    text = str(uri)
    if text.isdigit() or text.startswith("/dev/video"):
        return True
    return "://" in text and text.split("://", 1)[0].lower() in STREAM_SCHEMES


@dataclass(frozen=True)
class StreamOptions:
    """How a live source reads its camera; validated on creation (defined once here).

    Attributes:
        open_timeout_s: Longest wait for a connection to open.
        read_timeout_s: Longest wait for one frame before the read counts as failed.
        stall_s: A read blocking at least this long (and three frame periods) after the
            first frame of a connection is a stall: reconnect.
        queue_size: Frames buffered between the reader and the pipeline (>= 1).
        backoff_initial_s: First reconnect delay; doubles per failed attempt.
        backoff_max_s: Longest reconnect delay.
        rtsp_transport: RTSP lower transport, one of ``RTSP_TRANSPORTS`` (FFmpeg's
            option; ``tcp`` survives lossy links); None leaves
            ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` as the environment sets it.
        wait_first_s: How long opening waits for the first frame (so that ``size_wh``
            and ``fps`` are known), from the run start; None = ``open_timeout_s`` + 1.

    Raises:
        ValueError: A value of the wrong type or out of range (names the option).
    """

    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    read_timeout_s: float = 5.0
    stall_s: float = 2.0
    queue_size: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    rtsp_transport: str | None = "tcp"
    wait_first_s: float | None = None

    def __post_init__(self) -> None:
        positive = ("open_timeout_s", "read_timeout_s", "stall_s", "backoff_initial_s",
                    "backoff_max_s")
        for name in (*positive, "wait_first_s"):
            value = getattr(self, name)
            if name == "wait_first_s" and value is None:
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                value > 0 if name in positive else value >= 0)
            if not ok:
                raise ValueError(f"stream option {name} must be a number "
                                 f"{'> 0' if name in positive else '>= 0'} (seconds), "
                                 f"got {value!r}")
        if not isinstance(self.queue_size, int) or isinstance(self.queue_size, bool) or \
                self.queue_size < 1:
            raise ValueError("stream option queue_size must be an integer >= 1 (frames), "
                             f"got {self.queue_size!r}")
        if self.rtsp_transport is not None and self.rtsp_transport not in RTSP_TRANSPORTS:
            raise ValueError(f"stream option rtsp_transport must be one of "
                             f"{', '.join(RTSP_TRANSPORTS)} or null, got {self.rtsp_transport!r}")

    @property
    def first_frame_wait_s(self) -> float:
        """Seconds a source waits for its first frame: ``wait_first_s``, else
        ``open_timeout_s`` + 1."""
        if self.wait_first_s is None:
            return float(self.open_timeout_s) + 1.0
        return float(self.wait_first_s)

    @classmethod
    def parse(cls, options: Mapping[str, Any], where: str) -> StreamOptions:
        """Options from a mapping (a config's ``stream``); errors start with ``where``.

        Raises:
            ValueError: An unknown name (the message lists the allowed ones) or a bad value.
        """
        allowed = sorted(f.name for f in fields(cls))
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} in {where}; "
                             f"allowed: {', '.join(allowed)}")
        try:
            return cls(**options)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def first_frame_wait_s(options: Mapping[str, Any]) -> float:
    """Seconds a ``StreamSource`` opened with ``options`` waits for its first frame.

    ``options``: fields of :class:`StreamOptions` (other keys, such as ``epoch_s``, are
    ignored); see :attr:`StreamOptions.first_frame_wait_s`.
    """
    known = {f.name for f in fields(StreamOptions)}
    return StreamOptions(**{k: v for k, v in options.items() if k in known}).first_frame_wait_s


def _capture_target(uri: str | int) -> str | int:
    """What ``cv2.VideoCapture`` takes: an int device index or the URL."""
    if isinstance(uri, int):
        return uri
    text = str(uri)
    if text.lower().startswith("webcam://"):
        text = text.split("://", 1)[1].strip("/")
    return int(text) if text.isdigit() else text


class StreamSource(FrameSource):
    """A live camera read on a background thread (see the module docstring)."""

    def __init__(
        self,
        *,
        camera_id: str,
        uri: str | int,
        fps: float | None = None,
        epoch_s: float | None = None,
        options: StreamOptions | Mapping[str, Any] | None = None,
    ) -> None:
        """Start reading the camera.

        Args:
            camera_id: Camera name put in every frame.
            uri: ``rtsp://``, ``rtsps://``, ``http(s)://`` URL, ``webcam://N``, or a
                webcam index (int or digit string).
            fps: Frame rate used for tick pacing; None uses the rate the stream reports
                once connected (10 until then).
            epoch_s: ``time.monotonic()`` value that is timestamp 0 (the run start);
                None = now.
            options: Timeouts, buffering and reconnection (:class:`StreamOptions`, or a
                mapping of its fields); None = the defaults. The wait for the first frame
                (``wait_first_s``) counts from ``epoch_s`` when given (cameras of one run
                opened in turn share one start-up wait, not one each), else from now. The
                source never fails because a camera is down: it keeps reconnecting.

        Raises:
            ValueError: A bad option (the message names the camera and shows the URL
                redacted).
        """
        quiet_native_logs()
        self.camera_id = camera_id
        self.uri = uri
        self.display_uri = redact_url(uri)
        if not isinstance(options, StreamOptions):
            options = StreamOptions.parse(
                options or {}, f"Camera {camera_id!r} ({self.display_uri}) stream options")
        self.options = options
        self._fixed_fps = None if fps is None else check_fps(fps, camera_id, self.display_uri)
        self.fps = self._fixed_fps or _DEFAULT_FPS
        self.frame_count = None
        self.size_wh = (0, 0)
        self.epoch_s = time.monotonic() if epoch_s is None else float(epoch_s)
        self.open_timeout_s = float(options.open_timeout_s)
        self.read_timeout_s = float(options.read_timeout_s)
        self.stall_s = float(options.stall_s)
        self.backoff_initial_s = float(options.backoff_initial_s)
        self.backoff_max_s = max(float(options.backoff_max_s), self.backoff_initial_s)
        self.rtsp_transport = options.rtsp_transport
        queue_size = options.queue_size
        self._queue: collections.deque[Frame] = collections.deque()
        self._queue_size = int(queue_size)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._counters = dict.fromkeys(
            ("frames", "delivered", "dropped", "stale", "reconnects", "open_failures",
             "outages"), 0)
        self._outage_s = 0.0
        self._outage_since: float | None = None
        self._connected_once = False
        self._created = time.monotonic()
        self._last_good: float | None = None
        self._state = "connecting"
        self._last_error = ""
        self._thread = threading.Thread(
            target=self._run, name=f"stream-{camera_id}", daemon=True)
        self._thread.start()
        wait = options.first_frame_wait_s
        start = self._created if epoch_s is None else min(self.epoch_s, self._created)
        with self._cond:
            self._cond.wait_for(lambda: self._connected_once or self._stop.is_set(),
                                max(0.0, start + wait - time.monotonic()))
        if not self._connected_once:
            logger.warning("Camera %r (%s): no frame after %.1f s; starting anyway and "
                           "retrying in the background", camera_id, self.display_uri,
                           time.monotonic() - start)

    # ----------------------------------------------------------------- consumer side
    def latest(self) -> Frame | None:
        """The newest queued frame, or None; older queued frames are dropped (counted)."""
        with self._cond:
            if not self._queue:
                return None
            frame = self._queue.pop()
            self._counters["dropped"] += len(self._queue)
            self._queue.clear()
            self._counters["delivered"] += 1
            return frame

    def read(self, timeout_s: float | None = None) -> Frame | None:
        """The oldest queued frame, waiting up to ``timeout_s`` (None = until closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._stop.is_set(), timeout_s)
            if not self._queue:
                return None
            self._counters["delivered"] += 1
            return self._queue.popleft()

    def __iter__(self) -> Iterator[Frame]:
        """Every frame in order (oldest first) until ``close()``; drops still apply."""
        while not self._stop.is_set():
            frame = self.read(timeout_s=0.5)
            if frame is not None:
                yield frame

    def health(self) -> dict[str, Any]:
        """Counters since the source opened (JSON-friendly; the URL redacted).

        Keys: ``camera``, ``source``, ``state`` (connecting/connected/reconnecting/closed),
        ``frames`` (read from the camera), ``delivered`` (handed to the pipeline),
        ``dropped`` (queue overflow or superseded by a newer frame), ``stale``
        (duplicate frames discarded), ``reconnects`` (successful reopenings after a
        failure), ``open_failures``, ``outages``, ``outage_s`` (seconds without frames
        after a failure, including an outage still going on), ``last_frame_age_s``,
        ``fps``, ``size_wh``, ``last_error``.
        """
        now = time.monotonic()
        with self._cond:
            outage = self._outage_s
            if self._outage_since is not None:
                outage += now - self._outage_since
            return {
                "camera": self.camera_id,
                "source": self.display_uri,
                "state": self._state,
                **self._counters,
                "queued": len(self._queue),
                "outage_s": round(outage, 3),
                "last_frame_age_s": None if self._last_good is None
                else round(now - self._last_good, 3),
                "fps": self.fps,
                "size_wh": list(self.size_wh),
                "last_error": self._last_error,
            }

    def close(self) -> None:
        """Stop the reader thread and release the camera (safe to call twice)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            # A read may block for up to read_timeout_s; the thread is a daemon either way.
            self._thread.join(timeout=self.read_timeout_s + 1.0)
        with self._cond:
            self._state = "closed"
            if self._outage_since is not None:
                self._outage_s += time.monotonic() - self._outage_since
                self._outage_since = None

    def __repr__(self) -> str:
        return (f"StreamSource(camera_id={self.camera_id!r}, uri={self.display_uri!r}, "
                f"fps={self.fps:g})")

    # ------------------------------------------------------------------ reader side
    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            capture = self._open()
            if capture is None:
                with self._cond:
                    self._counters["open_failures"] += 1
                    self._begin_outage(self._last_good or self._created)
            else:
                delivered = self._read_loop(capture)
                capture.release()
                if delivered:
                    attempt = 0
            if self._stop.is_set():
                break
            attempt += 1
            delay = self._backoff(attempt)
            logger.warning("Camera %r (%s): %s; reconnecting in %.1f s (attempt %d)",
                           self.camera_id, self.display_uri, self._last_error, delay, attempt)
            with self._cond:
                self._state = "reconnecting"
            self._stop.wait(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential delay with "equal jitter": half fixed, half random."""
        delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(attempt - 1, 30))
        return delay / 2 + random.uniform(0.0, delay / 2)

    def _open(self) -> cv2.VideoCapture | None:
        target = _capture_target(self.uri)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        with _OPEN_LOCK:
            saved = os.environ.get(_FFMPEG_OPTIONS)
            if self.rtsp_transport and saved is None and isinstance(target, str):
                os.environ[_FFMPEG_OPTIONS] = f"rtsp_transport;{self.rtsp_transport}"
            try:
                if isinstance(target, int):
                    capture = cv2.VideoCapture(target)
                else:
                    capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
            except cv2.error as error:
                capture = None
                self._last_error = f"open failed ({type(error).__name__})"
            finally:
                if saved is None:
                    os.environ.pop(_FFMPEG_OPTIONS, None)
        if capture is None or not capture.isOpened():
            if capture is not None:
                capture.release()
            self._last_error = "cannot open the stream (down, unreachable, or refused)"
            return None
        reported = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if self._fixed_fps is None and 1.0 <= reported <= 120.0:
            self.fps = reported
        return capture

    def _read_loop(self, capture: cv2.VideoCapture) -> bool:
        """Read until failure or stop; True when at least one fresh frame arrived."""
        delivered = False
        last_pts = -1.0
        last_sample: np.ndarray | None = None
        fresh_at = time.monotonic()
        with self._cond:
            self._state = "connected"
        while not self._stop.is_set():
            started = time.monotonic()
            ok, image = capture.read()
            now = time.monotonic()
            if not ok or image is None:
                self._fail(f"no frame within {self.read_timeout_s:g} s (read failed, timed "
                           "out or stream ended)", now)
                return delivered
            pts = float(capture.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
            sample = image[::16, ::16]
            duplicate = pts > 0 and pts == last_pts
            # The first read of a connection may wait for a key frame; later, a read this
            # slow only returned what the back end had left over after a stall.
            slow = delivered and now - started >= max(self.stall_s, 3.0 / self.fps)
            identical = last_sample is not None and np.array_equal(sample, last_sample)
            if duplicate or slow:
                with self._cond:
                    self._counters["stale"] += 1
                if slow or now - fresh_at >= self.read_timeout_s:
                    what = "duplicate" if duplicate or identical else "late"
                    self._fail(f"stale ({what}) frame after a {now - started:.1f} s stall", now)
                    return delivered
                continue
            last_pts, last_sample, fresh_at = pts, sample.copy(), now
            self._deliver(image, now)
            delivered = True
        return delivered

    def _deliver(self, image: np.ndarray, now: float) -> None:
        with self._cond:
            if self._outage_since is not None:
                self._outage_s += now - self._outage_since
                self._outage_since = None
                self._counters["reconnects"] += 1
                logger.warning("Camera %r (%s): reconnected", self.camera_id, self.display_uri)
            if not self._connected_once:
                self.size_wh = (int(image.shape[1]), int(image.shape[0]))
                self._connected_once = True
            index = self._counters["frames"]
            self._counters["frames"] += 1
            self._last_good = now
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self._counters["dropped"] += 1
            self._queue.append(Frame(camera_id=self.camera_id, index=index,
                                     timestamp_s=now - self.epoch_s, image_bgr=image))
            self._cond.notify_all()

    def _fail(self, reason: str, now: float) -> None:
        with self._cond:
            self._last_error = reason
            # The outage began with the last good frame, not when the timeout fired.
            self._begin_outage(self._last_good if self._last_good is not None else now)

    def _begin_outage(self, since: float) -> None:
        """Caller holds ``self._cond``."""
        if self._outage_since is None:
            self._outage_since = since
            self._counters["outages"] += 1
