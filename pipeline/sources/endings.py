"""Recorded cameras that end far too early: truncated or damaged files, short recordings.

A truncated video decodes fine up to the cut and then simply ends, so a run would go on
with the other cameras and nothing would tell the user that one camera stopped after a
few frames. After the frame loop, :func:`early_endings` compares what each camera that
ran out had read with what was expected of it:

* its container's frame count, when the container states one (``frame_count``);
* the other cameras: the longest stretch of time any camera of the run covered, at this
  camera's frame rate.

A camera is marked when it read less than ``ratio`` (90%) of the larger expectation and
at least ``min_gap_s`` (1 s) of footage less. Cameras that did not run out (the run
stopped first: ``--max-frames``, ``--duration``, Ctrl-C) are never marked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.sources.base import FrameSource

__all__ = ["early_endings"]

logger = logging.getLogger(__name__)


def early_endings(
    sources: Sequence[FrameSource],
    ended: Mapping[str, int],
    frames: Mapping[str, int],
    *,
    ratio: float = 0.9,
    min_gap_s: float = 1.0,
) -> dict[str, dict[str, Any]]:
    """Which cameras ended far earlier than expected; logs one warning per such camera.

    Args:
        sources: The recorded cameras of the run (``fps``, ``frame_count``).
        ended: Per camera id, frames read when its source ran out (``CameraSet.ended``);
            cameras absent here were still going when the run stopped.
        frames: Per camera id, frames the run processed (how far the cameras that had
            not ended got).
        ratio: A camera is early below this share of its expected frames.
        min_gap_s: ... and when it misses at least this many seconds of footage.

    Returns:
        Per camera id of ``sources``: ``{"ended_early": False}``, or ``{"ended_early":
        True, "frames_expected": N, "expected_from": "container" | "other cameras"}``
        (for ``summary.json``).
    """
    # How far in time the run got, per camera (seconds of footage read).
    covered = {s.camera_id: ended.get(s.camera_id, frames.get(s.camera_id, 0)) / s.fps
               for s in sources}
    report: dict[str, dict[str, Any]] = {}
    for source in sources:
        cid = source.camera_id
        report[cid] = {"ended_early": False}
        if cid not in ended:
            continue
        read = ended[cid]
        by_container = int(source.frame_count or 0)
        others_s = max((s for c, s in covered.items() if c != cid), default=0.0)
        by_others = round(others_s * source.fps)
        expected = max(by_container, by_others)
        if not (read < ratio * expected and expected - read >= min_gap_s * source.fps):
            continue
        source_from = "container" if by_container >= by_others else "other cameras"
        report[cid] = {"ended_early": True, "frames_expected": expected,
                       "expected_from": source_from}
        if source_from == "container":
            what = (f"its file says {by_container} frames: it is probably truncated or "
                    "damaged. Check that it plays to the end (a cut copy or download?) "
                    "and copy or re-encode it again")
        else:
            what = (f"the other cameras ran {others_s:.1f} s ({by_others} frames at "
                    f"{source.fps:g} fps). Check that the file is complete and that the "
                    "cameras' recordings cover the same time")
        logger.warning("Camera %r: %s ended after %d frames (%.1f s), but %s; the run went "
                       "on without this camera.", cid, _where(source), read,
                       read / source.fps, what)
    return report


def _where(source: FrameSource) -> str:
    path = getattr(source, "path", None)
    return str(path) if path is not None else "its source"
