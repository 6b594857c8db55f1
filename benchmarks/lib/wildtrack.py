"""WILDTRACK annotations and calibrations, and tracker-like tracklets made from them.

WILDTRACK (shared/data/mtmc/wildtrack, see shared/data/README.md) annotates 400 frames
(every 5th of 2,000 frames of 10 fps video, i.e. 2 fps) of 7 overlapping 1920x1080
views. Each annotation file ``annotations_positions/XXXXXXXX.json`` (the name is the
frame number) is a list of people::

    {"personID": 122, "positionID": 456826,
     "views": [{"viewNum": 0, "xmin": 1510, "ymin": 139, "xmax": 1561, "ymax": 299}, ...]}

with one entry per view (all four coordinates -1 where the person is not visible in that
view) and a ground-plane position on a 480 x 1440 grid (X index first: ``x = id % 480``,
``y = id // 480``), 2.5 cm spacing, origin (-3.0, -9.0) m. Identities are shared by all
views. ``calibrations/`` holds OpenCV XML files per camera: ``extrinsic/extr_<name>.xml``
(``rvec``, ``tvec`` in centimetres, world -> camera) and ``intrinsic_zero/intr_<name>.xml``
(camera matrix of the undistorted images the boxes are drawn on, zero distortion;
``intrinsic_original`` holds the raw lens model). Views 0..6 are the cameras CVLab1-4 and
IDIAP1-3; this module names them ``C1`` .. ``C7``.

The second half makes what a per-camera tracker would have output from those boxes
(:func:`synthesize_tracks`): each person's track in each view is cut into tracklets at
the gaps a tracker could not bridge and at random breaks, observations are randomly
missed, boxes are jittered and clipped to the image, and (later, in
``TrackletBuilder``) too-short tracklets are dropped. :func:`tracker_frames` turns
those tracks into the per-frame ``Tracks`` the pipeline's ``TrackletBuilder`` consumes,
so tracklets are pooled exactly as in a real run. Everything random is seeded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.calibration import GroundCalibration, read_opencv_xml
from pipeline.evaluation.mtmc import BoxTable
from pipeline.geometry import clip_xyxy
from pipeline.types import GlobalTrack, Tracklet, Tracks

__all__ = [
    "CAMERAS",
    "CALIBRATION_NAMES",
    "IMAGE_WH",
    "VIDEO_FPS",
    "Annotations",
    "Calibration",
    "FragmentConfig",
    "SyntheticTrack",
    "load_annotations",
    "load_calibrations",
    "position_to_ground",
    "ground_to_position",
    "synthesize_tracks",
    "tracker_frames",
    "gt_table",
    "prediction_table",
    "assign_identities",
    "truncate_like_box",
    "ground_points",
]

logger = logging.getLogger(__name__)

CAMERAS = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")
"""Camera ids used here, index = WILDTRACK ``viewNum``."""
CALIBRATION_NAMES = ("CVLab1", "CVLab2", "CVLab3", "CVLab4", "IDIAP1", "IDIAP2", "IDIAP3")
"""Calibration file stem of each view (same order as :data:`CAMERAS`)."""
IMAGE_WH = (1920, 1080)
VIDEO_FPS = 10.0
"""Frame rate of the frame numbering (annotations every 5th frame = 2 fps)."""
GRID_WIDTH, GRID_HEIGHT = 480, 1440
GRID_ORIGIN_M = (-3.0, -9.0)
GRID_STEP_M = 0.025


# -- annotations ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Annotations:
    """Visible WILDTRACK boxes, row aligned, sorted by (frame, person, view).

    Attributes:
        frame: int64 (N,) frame number (multiples of 5, 0..1995).
        person_id: int64 (N,) WILDTRACK ``personID`` (same person in every view).
        position_id: int64 (N,) ground-plane grid position of the person at that frame.
        view: int64 (N,) view index 0..6 (camera ``CAMERAS[view]``).
        xyxy: float64 (N, 4) box as annotated (may extend past the image).
        frames: int64 (F,) every annotated frame number (also frames with nobody visible).
    """

    frame: np.ndarray
    person_id: np.ndarray
    position_id: np.ndarray
    view: np.ndarray
    xyxy: np.ndarray
    frames: np.ndarray

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @property
    def person_ids(self) -> np.ndarray:
        """Sorted unique person ids with at least one visible box."""
        return np.unique(self.person_id)

    def select(self, mask: np.ndarray) -> Annotations:
        """Rows where ``mask`` (N,) bool is true (``frames`` is kept)."""
        return Annotations(self.frame[mask], self.person_id[mask], self.position_id[mask],
                           self.view[mask], self.xyxy[mask], self.frames)


def _frame_number(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError as exc:
        raise ValueError(f"{path}: annotation files must be named by frame number, "
                         "e.g. 00000005.json") from exc


def load_annotations(folder: str | Path, *, max_frames: int | None = None) -> Annotations:
    """Read ``annotations_positions/*.json``.

    Args:
        folder: The ``annotations_positions`` folder.
        max_frames: Read only the first ``max_frames`` files in frame order (None = all).

    Returns:
        The visible boxes; a view entry counts as visible unless all four coordinates
        are -1, and boxes without area (x2 <= x1 or y2 <= y1) are skipped.

    Raises:
        FileNotFoundError: the folder is missing or holds no ``*.json``.
        ValueError: a file does not have the WILDTRACK layout (the message names it).
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.json"), key=_frame_number) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no WILDTRACK annotation files (*.json) in {folder}; expected "
                                "shared/data/mtmc/wildtrack/annotations_positions")
    if max_frames is not None:
        files = files[: max(int(max_frames), 0)]
    rows: list[tuple[int, int, int, int, float, float, float, float]] = []
    skipped = 0
    for path in files:
        frame = _frame_number(path)
        try:
            people = json.loads(path.read_text())
            for person in people:
                pid, pos = int(person["personID"]), int(person["positionID"])
                for view in person["views"]:
                    box = [float(view[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
                    if all(v == -1 for v in box):
                        continue
                    if box[2] <= box[0] or box[3] <= box[1]:
                        skipped += 1
                        continue
                    rows.append((frame, pid, pos, int(view["viewNum"]), *box))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a WILDTRACK annotation file (list of persons with "
                             f"personID, positionID, views[viewNum, xmin..ymax]): {exc}") from exc
    if skipped:
        logger.info("WILDTRACK: skipped %d boxes without area", skipped)
    frames = np.array([_frame_number(p) for p in files], np.int64)
    if not rows:
        empty = np.zeros(0, np.int64)
        return Annotations(empty, empty, empty, empty, np.zeros((0, 4)), frames)
    table = np.array(rows, dtype=np.float64)
    order = np.lexsort((table[:, 3], table[:, 1], table[:, 0]))
    table = table[order]
    ints = table[:, :4].astype(np.int64)
    if ints[:, 3].min() < 0 or ints[:, 3].max() >= len(CAMERAS):
        raise ValueError(f"{folder}: viewNum outside 0..{len(CAMERAS) - 1}")
    return Annotations(ints[:, 0], ints[:, 1], ints[:, 2], ints[:, 3], table[:, 4:8], frames)


def position_to_ground(position_id: np.ndarray | int) -> np.ndarray:
    """Grid ``positionID`` -> ground-plane (X, Y) in metres: (N,) -> (N, 2)."""
    pos = np.asarray(position_id, np.int64).reshape(-1)
    x = GRID_ORIGIN_M[0] + GRID_STEP_M * (pos % GRID_WIDTH)
    y = GRID_ORIGIN_M[1] + GRID_STEP_M * (pos // GRID_WIDTH)
    return np.stack([x, y], axis=1)


def ground_to_position(xy_m: np.ndarray) -> np.ndarray:
    """Ground-plane (X, Y) metres -> nearest grid ``positionID``: (N, 2) -> (N,) int64.

    Points outside the grid are clamped to its border.
    """
    xy = np.asarray(xy_m, np.float64).reshape(-1, 2)
    gx = np.clip(np.rint((xy[:, 0] - GRID_ORIGIN_M[0]) / GRID_STEP_M), 0, GRID_WIDTH - 1)
    gy = np.clip(np.rint((xy[:, 1] - GRID_ORIGIN_M[1]) / GRID_STEP_M), 0, GRID_HEIGHT - 1)
    return (gy * GRID_WIDTH + gx).astype(np.int64)


# -- calibrations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """Pinhole model of one WILDTRACK camera; world frame = ground plane, metres.

    Attributes:
        camera_id: ``C1`` .. ``C7``.
        camera_matrix: (3, 3) intrinsics K (pixels).
        dist_coeffs: (5,) OpenCV distortion coefficients (zeros for ``intrinsic_zero``).
        rotation: (3, 3) world -> camera rotation.
        translation_m: (3,) world -> camera translation in metres.
    """

    camera_id: str
    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    rotation: np.ndarray
    translation_m: np.ndarray

    def project(self, world_xyz_m: np.ndarray) -> np.ndarray:
        """World points (N, 3) metres -> pixels (N, 2) (distortion applied if any)."""
        import cv2

        pts = np.asarray(world_xyz_m, np.float64).reshape(-1, 3)
        rvec = cv2.Rodrigues(self.rotation)[0]
        out, _ = cv2.projectPoints(pts, rvec, self.translation_m, self.camera_matrix,
                                   self.dist_coeffs)
        return out.reshape(-1, 2)

    def ground_homography(self) -> np.ndarray:
        """(3, 3) H mapping ground (X, Y, 1) metres to undistorted pixels (u, v, 1)."""
        rt = np.column_stack([self.rotation[:, 0], self.rotation[:, 1], self.translation_m])
        return self.camera_matrix @ rt

    def floor(self) -> GroundCalibration:
        """The same camera as a run's calibration (``pipeline.calibration``)."""
        return GroundCalibration(camera_id=self.camera_id,
                                 homography=np.linalg.inv(self.ground_homography()),
                                 camera_matrix=self.camera_matrix,
                                 dist_coeffs=self.dist_coeffs if np.any(self.dist_coeffs)
                                 else None)

    def image_to_ground(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) -> ground-plane points (N, 2) metres (the pixel's ray meets Z=0;
        NaN above the horizon)."""
        return self.floor().to_floor(uv)


def load_calibrations(folder: str | Path, *, intrinsics: str = "zero") -> dict[str, Calibration]:
    """Read the 7 cameras' calibrations.

    Args:
        folder: The ``calibrations`` folder (with ``extrinsic/`` and ``intrinsic_*``).
        intrinsics: "zero" (the undistorted images the annotations refer to) or
            "original" (raw lens model with distortion).

    Returns:
        ``{camera_id: Calibration}`` for ``C1`` .. ``C7``.

    Raises:
        FileNotFoundError: a calibration file is missing.
        ValueError: unknown ``intrinsics`` or a malformed file.
    """
    import cv2

    if intrinsics not in ("zero", "original"):
        raise ValueError(f"intrinsics must be 'zero' or 'original', got {intrinsics!r}")
    folder = Path(folder)
    out = {}
    for cam, name in zip(CAMERAS, CALIBRATION_NAMES, strict=True):
        extr = folder / "extrinsic" / f"extr_{name}.xml"
        intr = folder / f"intrinsic_{intrinsics}" / f"intr_{name}.xml"
        for path in (extr, intr):
            if not path.is_file():
                raise FileNotFoundError(f"WILDTRACK calibration file not found: {path}")
        intr_nodes = read_opencv_xml(intr, ["camera_matrix", "distortion_coefficients"])
        extr_nodes = read_opencv_xml(extr, ["rvec", "tvec"])
        k, dist = intr_nodes["camera_matrix"], intr_nodes["distortion_coefficients"]
        rvec, tvec = extr_nodes["rvec"], extr_nodes["tvec"]
        if k.size != 9 or rvec.size != 3 or tvec.size != 3:
            raise ValueError(f"{intr} / {extr}: expected a 3x3 camera_matrix, 3 rvec, 3 tvec")
        out[cam] = Calibration(
            camera_id=cam, camera_matrix=k.reshape(3, 3), dist_coeffs=dist.reshape(-1),
            rotation=cv2.Rodrigues(rvec.reshape(3, 1))[0], translation_m=tvec / 100.0)
    return out


# -- tracker-like tracklets -----------------------------------------------------------------
@dataclass(frozen=True)
class FragmentConfig:
    """How gt tracks are broken and perturbed into tracker-like tracks.

    Steps are annotated frames (0.5 s apart).

    Attributes:
        bridge_steps: Longest run of missing steps a tracker bridges (1 = a track
            survives one missed annotation, 1 s at 2 fps); longer gaps start a new track.
        miss_prob: Chance that an observation is missed (dropped from its track).
        break_prob: Chance per observation that the tracker loses the person there and
            starts a new track (an identity fragment).
        break_gap_max: After a break, 0..break_gap_max further steps are missed.
        jitter: Std of the box edge noise as a fraction of the box width/height
            (clipped at 3 std), like a detector's localisation error.
        score_range: Detection scores are drawn uniformly from this range.
    """

    bridge_steps: int = 2
    miss_prob: float = 0.1
    break_prob: float = 0.05
    break_gap_max: int = 2
    jitter: float = 0.05
    score_range: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        for name in ("miss_prob", "break_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"FragmentConfig.{name} must be in [0, 1)")
        if self.bridge_steps < 0 or self.break_gap_max < 0 or self.jitter < 0:
            raise ValueError("FragmentConfig: bridge_steps, break_gap_max, jitter must be >= 0")


@dataclass(eq=False)
class SyntheticTrack:
    """One tracker-like track of one person in one camera.

    Attributes:
        camera_id: ``C1`` .. ``C7``.
        track_id: Per-camera track id (1.., by start frame).
        person_id: The WILDTRACK person it follows (the truth, for oracles and checks).
        frames: int64 (M,) frame numbers, increasing.
        xyxy: float32 (M, 4) jittered boxes clipped to the image, pixels.
        score: float32 (M,) detection scores.
        full_xyxy: float32 (M, 4) the jittered boxes before clipping (how much of the
            person the image border cuts off).
    """

    camera_id: str
    track_id: int
    person_id: int
    frames: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    full_xyxy: np.ndarray

    @property
    def key(self) -> tuple[str, int]:
        return (self.camera_id, self.track_id)

    @property
    def timestamps_s(self) -> np.ndarray:
        return self.frames.astype(np.float64) / VIDEO_FPS


def _split_runs(steps: np.ndarray, bridge_steps: int) -> list[np.ndarray]:
    """Indices of ``steps`` (sorted ints) cut where the gap exceeds ``bridge_steps``."""
    cuts = np.flatnonzero(np.diff(steps) > bridge_steps + 1) + 1
    return np.split(np.arange(len(steps)), cuts)


def _jitter(boxes: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    wh = np.stack([w, h, w, h], axis=1)
    noise = np.clip(rng.normal(0.0, sigma, boxes.shape), -3 * sigma, 3 * sigma)
    out = boxes + noise * wh
    # Keep the box valid: at least 4 px wide/tall after the noise.
    out[:, 2] = np.maximum(out[:, 2], out[:, 0] + 4)
    out[:, 3] = np.maximum(out[:, 3], out[:, 1] + 4)
    return out


def synthesize_tracks(
    annotations: Annotations,
    config: FragmentConfig = FragmentConfig(),
    *,
    seed: int = 0,
    step: int = 5,
) -> list[SyntheticTrack]:
    """Tracker-like tracks from gt boxes: fragmented, with misses, jittered, seeded.

    Per (view, person), in that order: the person's visible annotations are split where
    more than ``config.bridge_steps`` steps are missing (the person left the view or was
    occluded for too long); inside a run each observation is missed with
    ``miss_prob`` and the track breaks with ``break_prob`` (followed by
    0..``break_gap_max`` missed steps); boxes are jittered and clipped to the image
    (boxes left with less than 2 px of width or height inside the image are dropped, as
    a detector finds nothing there). Short tracks are not removed here: the
    ``TrackletBuilder``'s ``min_length_s`` does that, as in the pipeline.

    Args:
        annotations: From :func:`load_annotations`.
        config: Fragmentation and noise settings.
        seed: Seed of every random draw (same seed, same tracks).
        step: Frame-number step between annotated frames (5 for WILDTRACK).

    Returns:
        Tracks sorted by (camera, track id); track ids are per camera, 1.., numbered in
        order of (start frame, person id).
    """
    rng = np.random.default_rng(seed)
    lo, hi = config.score_range
    pieces: dict[str, list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]] = {}
    width, height = IMAGE_WH
    order = np.lexsort((annotations.frame, annotations.person_id, annotations.view))
    view, pid = annotations.view[order], annotations.person_id[order]
    frame, boxes = annotations.frame[order], annotations.xyxy[order]
    group_starts = np.flatnonzero(np.r_[True, (np.diff(view) != 0) | (np.diff(pid) != 0)])
    for g, start in enumerate(group_starts):
        stop = group_starts[g + 1] if g + 1 < len(group_starts) else len(view)
        cam = CAMERAS[int(view[start])]
        person = int(pid[start])
        f, b = frame[start:stop], boxes[start:stop]
        n = len(f)
        miss = rng.random(n) < config.miss_prob
        brk = rng.random(n) < config.break_prob
        gaps = rng.integers(0, config.break_gap_max + 1, n)
        full = _jitter(b, config.jitter, rng)
        clipped = clip_xyxy(full, width, height).astype(np.float64)
        scores = rng.uniform(lo, hi, n)
        inside = ((clipped[:, 2] - clipped[:, 0]) >= 2) & ((clipped[:, 3] - clipped[:, 1]) >= 2)
        both = np.concatenate([clipped, full], axis=1)
        for run in _split_runs(f // step, config.bridge_steps):
            current: list[int] = []
            skip = 0
            for i in run.tolist():
                if brk[i] and current:
                    pieces.setdefault(cam, []).append(_piece(person, current, f, both, scores))
                    current = []
                    skip = int(gaps[i])
                if skip > 0:
                    skip -= 1
                    continue
                if miss[i] or not inside[i]:
                    continue
                current.append(i)
            if current:
                pieces.setdefault(cam, []).append(_piece(person, current, f, both, scores))
    tracks = []
    for cam in CAMERAS:
        ordered = sorted(pieces.get(cam, []), key=lambda p: (p[0], p[1]))
        for tid, (_, person, fr, bx, sc) in enumerate(ordered, start=1):
            tracks.append(SyntheticTrack(cam, tid, person, fr, bx[:, :4].astype(np.float32),
                                         sc.astype(np.float32), bx[:, 4:].astype(np.float32)))
    return tracks


def _piece(person: int, rows: list[int], frames: np.ndarray, boxes: np.ndarray,
           scores: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    idx = np.asarray(rows, np.int64)
    return (int(frames[idx[0]]), person, frames[idx].astype(np.int64), boxes[idx], scores[idx])


def tracker_frames(
    tracks: Sequence[SyntheticTrack],
    embeddings: Mapping[tuple[str, int], np.ndarray] | None = None,
) -> Iterator[tuple[str, int, float, Tracks, np.ndarray]]:
    """Replay tracks as per-frame tracker output, camera by camera, frames in order.

    Args:
        tracks: From :func:`synthesize_tracks`.
        embeddings: Optional ``{track key: (M, D) float32}`` row-aligned with the track's
            frames; an all-zero row means "not embedded" (as in the runner). Tracks
            missing from the mapping get zero rows.

    Yields:
        ``(camera_id, frame, timestamp_s, tracks, all_boxes_xyxy)`` — exactly the
        arguments of ``TrackletBuilder.update`` (with ``IMAGE_WH``); ``all_boxes`` are
        every box of the camera frame (the occluders), indexed by ``tracks.det_index``.
    """
    dim = max((v.shape[1] for v in (embeddings or {}).values()), default=0)
    by_cam: dict[str, list[SyntheticTrack]] = {}
    for t in tracks:
        by_cam.setdefault(t.camera_id, []).append(t)
    for cam in sorted(by_cam):
        rows: list[tuple[int, int, int, int]] = []  # frame, track index, row in track
        cam_tracks = by_cam[cam]
        for ti, t in enumerate(cam_tracks):
            rows.extend((int(fr), ti, r, t.track_id) for r, fr in enumerate(t.frames.tolist()))
        rows.sort(key=lambda r: (r[0], r[3]))
        i = 0
        while i < len(rows):
            j = i
            while j < len(rows) and rows[j][0] == rows[i][0]:
                j += 1
            block = rows[i:j]
            boxes = np.stack([cam_tracks[ti].xyxy[r] for _, ti, r, _ in block])
            emb = np.zeros((len(block), dim), np.float32)
            for k, (_, ti, r, _) in enumerate(block):
                vec = (embeddings or {}).get(cam_tracks[ti].key)
                if vec is not None:
                    emb[k] = vec[r]
            yield cam, block[0][0], block[0][0] / VIDEO_FPS, Tracks(
                track_id=np.array([cam_tracks[ti].track_id for _, ti, _, _ in block]),
                xyxy=boxes,
                score=np.array([cam_tracks[ti].score[r] for _, ti, r, _ in block]),
                det_index=np.arange(len(block)),
                embedding=emb,
            ), boxes
            i = j


# -- scoring glue ---------------------------------------------------------------------------
def gt_table(annotations: Annotations) -> BoxTable:
    """The MTMC ground truth: every visible box clipped to the image, id = personID.

    Boxes with less than 2 px inside the image are left out (nobody can detect them).
    """
    width, height = IMAGE_WH
    boxes = clip_xyxy(annotations.xyxy, width, height).astype(np.float64)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)
    return BoxTable(
        camera=np.array([CAMERAS[v] for v in annotations.view[keep]]),
        frame=annotations.frame[keep],
        identity=np.array([str(p) for p in annotations.person_id[keep]]),
        xyxy=boxes[keep],
    )


def prediction_table(tracklets: Sequence[Tracklet],
                     identities: Sequence[GlobalTrack]) -> BoxTable:
    """Every tracklet box labelled with its global id (a tracklet in no GlobalTrack keeps
    its own ``camera/track`` identity)."""
    gid = {key: str(g.global_id) for g in identities for key in g.members}
    rows = []
    for t in tracklets:
        ident = gid.get(t.key, f"{t.camera_id}/{t.track_id}")
        rows.extend((t.camera_id, int(f), ident, *map(float, box))
                    for f, box in zip(t.frames.tolist(), t.xyxy, strict=True))
    return BoxTable.from_rows(rows)


# -- appearance and geometry helpers --------------------------------------------------------
def assign_identities(person_ids: Sequence[int], reid_ids: Sequence[int], *,
                      seed: int = 0) -> dict[int, int]:
    """Give each WILDTRACK person a re-id identity, seeded.

    Distinct re-id ids are drawn without replacement; when there are more persons than
    ids, the pool is reshuffled and drawn again (some ids then stand for two persons,
    which is logged), so the mapping always exists.

    Returns:
        ``{person_id: reid_id}``.
    """
    pool = np.asarray(sorted(set(int(i) for i in reid_ids)), np.int64)
    if pool.size == 0:
        raise ValueError("assign_identities: no re-id identities given")
    persons = sorted(int(p) for p in person_ids)
    rng = np.random.default_rng(seed)
    rounds = -(-len(persons) // pool.size)
    drawn = np.concatenate([rng.permutation(pool) for _ in range(max(rounds, 1))])
    if rounds > 1:
        logger.warning("%d persons but %d re-id identities: %d ids are reused",
                       len(persons), pool.size, len(persons) - pool.size)
    return {p: int(r) for p, r in zip(persons, drawn[: len(persons)], strict=True)}


def truncate_like_box(image: np.ndarray, box_xyxy: Sequence[float],
                      box_in_image_xyxy: Sequence[float]) -> np.ndarray:
    """Cut a person image the way the image border cuts a detection box.

    Args:
        image: (H, W, 3) tight person image standing for the full box.
        box_xyxy: The person's full box in the camera (may extend past the image).
        box_in_image_xyxy: The same box clipped to the camera image.

    Returns:
        The part of ``image`` that corresponds to the clipped box (at least 1 x 1).
    """
    b = np.asarray(box_xyxy, np.float64)
    c = np.asarray(box_in_image_xyxy, np.float64)
    bw, bh = max(b[2] - b[0], 1e-9), max(b[3] - b[1], 1e-9)
    h, w = image.shape[:2]
    x1 = int(np.clip(round((c[0] - b[0]) / bw * w), 0, w - 1))
    x2 = int(np.clip(round((c[2] - b[0]) / bw * w), x1 + 1, w))
    y1 = int(np.clip(round((c[1] - b[1]) / bh * h), 0, h - 1))
    y2 = int(np.clip(round((c[3] - b[1]) / bh * h), y1 + 1, h))
    return image[y1:y2, x1:x2]


def ground_points(tracklet: Tracklet, calibration: Calibration, *,
                  image_wh: tuple[int, int] = IMAGE_WH, border_px: float = 2.0) -> np.ndarray:
    """Ground-plane (X, Y) metres of a tracklet's foot points (bottom centre of each box).

    A box whose bottom edge touches the image's bottom border hides the feet: its foot
    point would be wrong by up to metres, so it is NaN (unknown).

    Args:
        tracklet: Boxes in the camera's pixels.
        calibration: The camera's calibration.
        image_wh: Image (width, height) in pixels.
        border_px: Distance to the bottom border that counts as touching.

    Returns:
        float64 (M, 2), row aligned with ``tracklet.frames``; NaN rows where unknown.
    """
    return calibration.floor().foot_points(tracklet.xyxy, image_wh, border_px=border_px)
