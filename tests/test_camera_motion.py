"""Camera-motion compensation: the estimator on rendered frames, the tracker with it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.tracking import ByteTracker
from pipeline.tracking.camera_motion import CameraMotion
from pipeline.tracking.kalman import BoxKalmanFilter
from tests.conftest import make_dets

VIEW_WH = (480, 360)


def _world(seed: int = 0) -> np.ndarray:
    """A textured 1400x500 scene (blurred noise: corners everywhere)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (500, 1400), np.uint8)
    grey = cv2.GaussianBlur(noise, (0, 0), 2.0)
    grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _pan(frames: int, speed: float = 22.0, turn_every: int | None = 12) -> np.ndarray:
    """The view's left edge per frame: panning at ``speed`` px/frame, turning back every
    ``turn_every`` frames (None: one way, at a constant rate)."""
    x, out, direction = 300.0, [], 1.0
    for f in range(frames):
        out.append(x)
        if turn_every is not None and (f + 1) % turn_every == 0:
            direction = -direction
        x += direction * speed
    return np.array(out)


# People standing in the scene (world xyxy): the panning camera sweeps past them.
PEOPLE = np.array([[x, 150, x + 40, 250] for x in (420, 520, 620, 720, 820)], np.float32)


def _frames(n: int = 60, **pan):
    world = _world()
    for left in _pan(n, **pan):
        x0 = int(round(left))
        image = np.ascontiguousarray(world[100:100 + VIEW_WH[1], x0:x0 + VIEW_WH[0]])
        boxes = PEOPLE - np.array([x0, 100, x0, 100], np.float32)
        inside = (boxes[:, 0] >= 0) & (boxes[:, 2] <= VIEW_WH[0])
        yield image, boxes[inside], np.flatnonzero(inside)


def test_the_estimate_follows_the_pan_and_a_still_camera_gives_none():
    motion = CameraMotion(mode="on")
    shifts = []
    previous = None
    for image, boxes, _ in _frames(30):
        warp = motion(image, boxes)
        if previous is not None:
            assert warp is not None
            shifts.append(warp[0, 2])
            np.testing.assert_allclose(warp[:, :2], np.eye(2), atol=0.01)
        previous = image
    expected = -np.diff(np.round(_pan(30)))
    np.testing.assert_allclose(shifts, expected, atol=0.5)
    still = CameraMotion(mode="auto")
    image = next(_frames(1))[0]
    rng = np.random.default_rng(1)
    for _ in range(40):  # sensor noise only
        noisy = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
        assert still(noisy, np.zeros((0, 4))) is None
    assert 3 <= still.estimates <= 5 and still.moving_frames == 0  # a check a second
    with pytest.raises(ValueError, match="unknown camera motion mode"):
        CameraMotion(mode="sometimes")


@pytest.mark.parametrize("pan", [{"n": 60, "speed": 22.0, "turn_every": 12},
                                 {"n": 18, "speed": 34.0, "turn_every": None}],
                         ids=["turning", "constant"])
def test_a_panning_camera_keeps_its_tracks_with_compensation_and_loses_them_without(pan):
    """Five people stand still while the camera pans. Turning back and forth at 22 px a
    frame, every turn looks to the Kalman filter like everybody jumping 44 px the other
    way; at a constant 34 px a frame a newborn track (no velocity yet) never overlaps its
    person's next box. Compensated, each person keeps one id."""
    def ids_per_person(compensate: bool) -> dict[int, set[int]]:
        tracker, motion = ByteTracker(), CameraMotion(mode="on")
        seen: dict[int, set[int]] = {}
        for image, boxes, people in _frames(**pan):
            warp = motion(image, boxes)
            if compensate and warp is not None:
                tracker.compensate(warp)
            out = tracker.update(make_dets(boxes))
            for tid, row in zip(out.track_id.tolist(), out.det_index.tolist(), strict=True):
                seen.setdefault(int(people[row]), set()).add(tid)
        return seen

    with_motion = ids_per_person(True)
    assert len(with_motion) == len(PEOPLE)
    assert all(len(ids) == 1 for ids in with_motion.values())
    without = ids_per_person(False)
    lost = sum(len(ids) != 1 for ids in without.values()) + len(PEOPLE) - len(without)
    assert lost >= 2, without  # people with no id or several


def test_kalman_warp_moves_the_state_and_its_uncertainty():
    kf = BoxKalmanFilter(xyah=np.array([100.0, 50.0, 0.4, 80.0]))
    kf.predict()
    kf.update(np.array([104.0, 50.0, 0.4, 80.0]))
    before_c, before_v = kf.mean[:2].copy(), kf.mean[4:6].copy()
    before_p = kf.covariance.copy()
    angle, scale = np.deg2rad(90), 2.0
    a = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    kf.warp(np.column_stack([a, [10.0, -5.0]]))
    np.testing.assert_allclose(kf.mean[:2], a @ before_c + [10.0, -5.0], atol=1e-9)
    np.testing.assert_allclose(kf.mean[4:6], a @ before_v, atol=1e-9)
    assert kf.mean[3] == pytest.approx(160.0, rel=0.05)  # height doubles
    assert kf.covariance[3, 3] == pytest.approx(4 * before_p[3, 3])
    np.testing.assert_allclose(kf.covariance[0, 0], 4 * before_p[1, 1], rtol=1e-9)
