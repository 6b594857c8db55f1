"""Typed records that cross stage boundaries.

This module has no heavy imports (numpy only) so every stage can depend on it.
Conventions used everywhere:

* boxes are pixel coordinates; the format is named in the field (``xyxy`` =
  x1, y1, x2, y2 with x2 > x1 and y2 > y1);
* images are ``uint8`` arrays in **BGR** order, shape (H, W, 3) — conversion to
  RGB happens once, in the re-id embedder;
* row-aligned fields are always arrays (shape (0, ...) when empty, never None);
* embeddings are float32 and L2-normalised; "no embedding" is a (N, 0) array.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = ["Frame", "FrameInfo", "Detections", "Tracks", "Tracklet", "GlobalTrack",
           "TrackKey", "FrameTracks", "CameraUpdate", "Revision", "Identities",
           "DEFAULT_FPS", "seconds_to_frames", "renamed_to_seconds"]

DEFAULT_FPS = 10.0
"""The frame rate assumed by a per-camera component never told its camera's (unit
tests, studies replaying bare detections). Options given in seconds equal the frame
counts they replaced at this rate (PETS09 and the sample play at 10 fps)."""


def seconds_to_frames(seconds: float, fps: float) -> int:
    """``seconds`` of video as a whole number of frames at ``fps`` (rounded half up, >= 0)."""
    return max(0, int(np.floor(seconds * fps + 0.5)))


# Config keys that counted frames, renamed when they became seconds.
_TO_SECONDS = {"max_lost_frames": "max_lost_s", "max_weak_frames": "max_weak_s",
               "refresh_frames": "refresh_s", "min_length": "min_length_s",
               "min_frames": "min_s"}


def renamed_to_seconds(keys: Iterable[str]) -> str | None:
    """A message for config keys that counted frames and are now seconds; None if none."""
    old = [k for k in keys if k in _TO_SECONDS]
    if not old:
        return None
    return "; ".join(f"{k!r} is now {_TO_SECONDS[k]!r}, in seconds (frames at 10 fps / 10)"
                     for k in old)

TrackKey = tuple[str, int]
"""A per-camera track: ``(camera_id, track_id)``."""


class FrameInfo(Protocol):
    """Where a camera frame's results belong, as the frame loop reads them: a
    :class:`Frame` in process, a :class:`CameraUpdate` from a remote worker."""

    camera_id: str
    index: int
    timestamp_s: float
    size_wh: tuple[int, int]


def _as_float32(name: str, value: np.ndarray, ndim: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    return array


def _boxes(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must be (N, 4), got shape {array.shape}")
    return array


def _embedding(name: str, value: np.ndarray, n: int) -> np.ndarray:
    """(N, D) float32; an empty default becomes (N, 0) = "not embedded"."""
    array = np.asarray(value, dtype=np.float32)
    if array.size == 0 and not (array.ndim == 2 and array.shape[0] == n):
        return np.zeros((n, 0), np.float32)
    return _as_float32(name, array, 2)


def _check_rows(owner: str, n: int, **fields: np.ndarray) -> None:
    for name, value in fields.items():
        if value.shape[0] != n:
            raise ValueError(f"{owner}.{name} has {value.shape[0]} rows, expected {n}")


@dataclass(eq=False)
class Frame:
    """One decoded image from one camera.

    Attributes:
        camera_id: Camera name from the config (unique within a run).
        index: 0-based frame index within this camera's source.
        timestamp_s: Seconds since the start of the source (recorded footage) or
            since the run started (live streams); used to align cameras.
        image_bgr: uint8 array (H, W, 3), BGR.
    """

    camera_id: str
    index: int
    timestamp_s: float
    image_bgr: np.ndarray

    def __post_init__(self) -> None:
        image = self.image_bgr
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"Frame.image_bgr must be uint8 (H, W, 3), got {image.dtype} {image.shape}"
            )

    @property
    def size_wh(self) -> tuple[int, int]:
        """Image (width, height) in pixels."""
        return int(self.image_bgr.shape[1]), int(self.image_bgr.shape[0])


@dataclass(eq=False)
class Detections:
    """Person detections of one frame.

    Attributes:
        xyxy: float32 (N, 4) boxes in pixels.
        score: float32 (N,) detector confidence in [0, 1].
        embedding: float32 (N, D) L2-normalised appearance vectors, or (N, 0)
            when the detections have not been embedded.
    """

    xyxy: np.ndarray
    score: np.ndarray
    embedding: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __post_init__(self) -> None:
        self.xyxy = _boxes("Detections.xyxy", self.xyxy)
        n = self.xyxy.shape[0]
        self.score = _as_float32("Detections.score", self.score, 1)
        self.embedding = _embedding("Detections.embedding", self.embedding, n)
        _check_rows("Detections", n, score=self.score, embedding=self.embedding)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @property
    def has_embedding(self) -> bool:
        """True when every row carries an appearance vector."""
        return self.embedding.shape[1] > 0

    @classmethod
    def empty(cls, dim: int = 0) -> Detections:
        """No detections (optionally with an embedding width)."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            score=np.zeros((0,), np.float32),
            embedding=np.zeros((0, dim), np.float32),
        )

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        """Row selection with a boolean mask, an index array or a slice."""
        return Detections(
            xyxy=self.xyxy[index], score=self.score[index], embedding=self.embedding[index]
        )


@dataclass(eq=False)
class Tracks:
    """Confirmed tracks output by a per-camera tracker for one frame.

    Attributes:
        track_id: int64 (N,) per-camera track ids (positive, unique in a frame).
        xyxy: float32 (N, 4) boxes in pixels (the tracker's filtered box, or the matched
            detection's, see ``ByteTracker(output_box=...)``).
        score: float32 (N,) score of the matched detection.
        det_index: int64 (N,) row of the input ``Detections`` each track matched.
        embedding: float32 (N, D) the matched detection's embedding, or (N, 0).
    """

    track_id: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    det_index: np.ndarray
    embedding: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __post_init__(self) -> None:
        self.track_id = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
        n = self.track_id.shape[0]
        self.xyxy = _boxes("Tracks.xyxy", self.xyxy)
        self.score = _as_float32("Tracks.score", self.score, 1)
        self.det_index = np.asarray(self.det_index, dtype=np.int64).reshape(-1)
        self.embedding = _embedding("Tracks.embedding", self.embedding, n)
        _check_rows(
            "Tracks", n, score=self.score, det_index=self.det_index, embedding=self.embedding
        )

    def __len__(self) -> int:
        return int(self.track_id.shape[0])

    @classmethod
    def empty(cls) -> Tracks:
        return cls(
            track_id=np.zeros((0,), np.int64),
            xyxy=np.zeros((0, 4), np.float32),
            score=np.zeros((0,), np.float32),
            det_index=np.zeros((0,), np.int64),
        )


@dataclass(eq=False)
class Tracklet:
    """One camera's track over its whole life, summarised for cross-camera matching.

    Attributes:
        camera_id: Camera the track belongs to.
        track_id: The per-camera track id.
        frames: int64 (M,) frame indices, increasing.
        timestamps_s: float64 (M,) timestamps of those frames.
        xyxy: float32 (M, 4) boxes.
        embedding: float32 (D,) pooled L2-normalised appearance, or (0,) if none.
        quality: Mean quality of the observations pooled into ``embedding``
            (0 = no usable crop, 1 = large, confident, unoccluded).
    """

    camera_id: str
    track_id: int
    frames: np.ndarray
    timestamps_s: np.ndarray
    xyxy: np.ndarray
    embedding: np.ndarray
    quality: float = 0.0

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        m = self.frames.shape[0]
        self.timestamps_s = np.asarray(self.timestamps_s, dtype=np.float64).reshape(-1)
        self.xyxy = _boxes("Tracklet.xyxy", self.xyxy)
        self.embedding = _as_float32("Tracklet.embedding", self.embedding, 1)
        _check_rows("Tracklet", m, timestamps_s=self.timestamps_s, xyxy=self.xyxy)

    @property
    def start_s(self) -> float:
        return float(self.timestamps_s[0]) if len(self.frames) else float("nan")

    @property
    def end_s(self) -> float:
        return float(self.timestamps_s[-1]) if len(self.frames) else float("nan")

    @property
    def observed_s(self) -> float:
        """Seconds the track was seen for: its observations times their mean spacing,
        so 40 consecutive frames at 10 fps are 4 s, as are 8 observations at 2 fps;
        0 for a single observation, whose spacing is unknown."""
        n = len(self.frames)
        if n < 2:
            return 0.0
        return n * float(self.timestamps_s[-1] - self.timestamps_s[0]) / (n - 1)

    @property
    def key(self) -> tuple[str, int]:
        """(camera_id, track_id): unique within a run."""
        return (self.camera_id, self.track_id)


@dataclass(eq=False)
class GlobalTrack:
    """A cross-camera identity: the tracklets that belong to one person.

    Attributes:
        global_id: Positive identity number, unique within a run.
        members: (camera_id, track_id) keys of the member tracklets.
    """

    global_id: int
    members: tuple[tuple[str, int], ...]

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(sorted({camera for camera, _ in self.members}))


@dataclass(eq=False)
class FrameTracks:
    """One camera frame's tracks as the outputs receive them (what sinks get per frame).

    Compact on purpose (no image): it is what a camera's worker hands on, so it can
    cross a process boundary cheaply.

    Attributes:
        camera_id: Camera the frame came from.
        frame_index: 0-based frame index in that camera's source.
        timestamp_s: Seconds on the run's clock.
        size_wh: Image (width, height) in pixels.
        tracks: The tracker's output for the frame.
        global_ids: int64 (N,) cross-camera id per track row, known when the rows are
            handed on (``-1`` = not assigned yet; offline runs fill ids in at the end).
        crops: ``track_id -> uint8 (h, w, 3) BGR`` small crop (at most ~128 px high) of
            the tracks whose best view improved in this frame (only when the run keeps
            crops, see ``pipeline.export.crops``); empty otherwise. Small on purpose:
            the frame itself never travels with the rows.
        floor_xy: float64 (N, 2) floor position in metres of each track's foot point
            (``pipeline.calibration``; NaN where unknown), or None for a camera without
            a ground-plane calibration.
    """

    camera_id: str
    frame_index: int
    timestamp_s: float
    size_wh: tuple[int, int]
    tracks: Tracks
    global_ids: np.ndarray
    crops: Mapping[int, np.ndarray] = field(default_factory=dict)
    floor_xy: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.global_ids = np.asarray(self.global_ids, np.int64).reshape(-1)
        if self.global_ids.shape[0] != len(self.tracks):
            raise ValueError(f"FrameTracks of camera {self.camera_id!r}: global_ids has "
                             f"{self.global_ids.shape[0]} entries for {len(self.tracks)} tracks")
        if self.floor_xy is not None:
            self.floor_xy = np.asarray(self.floor_xy, np.float64).reshape(-1, 2)
            if self.floor_xy.shape[0] != len(self.tracks):
                raise ValueError(f"FrameTracks of camera {self.camera_id!r}: floor_xy has "
                                 f"{self.floor_xy.shape[0]} rows for {len(self.tracks)} tracks")

    def __len__(self) -> int:
        return len(self.tracks)


@dataclass(eq=False)
class CameraUpdate:
    """One camera frame's result as a remote camera worker hands it on: no image, no
    per-row embeddings (only tracklets carry appearance, pooled).

    It is a :class:`FrameInfo` (``camera_id``, ``index``, ``timestamp_s``, ``size_wh``),
    as a ``Frame`` is, so the loop needs no branch for remote cameras.

    Attributes:
        camera_id: Camera the frame came from.
        index: 0-based frame index in that camera's source.
        timestamp_s: Seconds on the run's clock.
        size_wh: Image (width, height) in pixels.
        tracks: The tracker's output for the frame, with (N, 0) embeddings.
        snapshots: Open tracklets snapshotted at this tick when the association was due
            (None when it was not; may hold other cameras of the same worker).
        finished: Tracklets handed on at this tick (same worker's cameras).
        crops: ``track_id -> small BGR crop`` of the tracks whose best view improved
            (see ``FrameTracks.crops``; empty when the run keeps no crops).
    """

    camera_id: str
    index: int
    timestamp_s: float
    size_wh: tuple[int, int]
    tracks: Tracks
    snapshots: list[Tracklet] | None = None
    finished: list[Tracklet] = field(default_factory=list)
    crops: Mapping[int, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Revision:
    """A tracklet's global id set (``old_global_id`` = -1) or changed at ``time_s``."""

    time_s: float
    camera: str
    track_id: int
    old_global_id: int
    new_global_id: int


@dataclass(frozen=True)
class Identities:
    """The final cross-camera identities of a run, as association decided them.

    Attributes:
        global_of: ``(camera, track_id) -> global id`` for every track that has one.
        tracklets: Tracklets that association was given (tracks of at least
            ``tracklets.min_length_s``).
        short_tracks: Of the identities, tracks too short to be tracklets that were
            given an identity of their own without association (offline runs).
        revisions: Global ids changed after their first assignment (online runs).
    """

    global_of: Mapping[TrackKey, int]
    tracklets: int = 0
    short_tracks: int = 0
    revisions: int = 0

    @property
    def count(self) -> int:
        """Number of distinct global ids."""
        return len(set(self.global_of.values()))

    @property
    def multi_camera(self) -> int:
        """Identities seen by two or more cameras."""
        cameras: dict[int, set[str]] = defaultdict(set)
        for (camera, _), gid in self.global_of.items():
            cameras[gid].add(camera)
        return sum(len(c) > 1 for c in cameras.values())
