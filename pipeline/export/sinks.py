"""Sinks: everything that persists a run's results, behind one small interface.

The frame loop hands every sink the same three things and never knows which sinks
exist (adding an output is adding a sink, like adding a logging handler):

* :meth:`Sink.on_rows` — one camera frame's tracks with the global ids known then
  (:class:`~pipeline.types.FrameTracks`), as the run goes;
* :meth:`Sink.on_revisions` — id decisions made during the run (online association:
  a tracklet's id set or changed);
* :meth:`Sink.on_tracklets` — tracklets as they are handed to association (finished
  ones, with their pooled embedding and quality; offline runs: all of them at the end);
* :meth:`Sink.on_identities` — the final identities, once, at the end;

then :meth:`Sink.flush` now and then (so a killed run leaves whole lines on disk) and
:meth:`Sink.close` once, which finishes the sink's files and returns the entries it adds
to the summary's ``outputs``. Sinks are closed in list order, so a sink that reads
another's file (plots, video) comes after it. :meth:`Sink.abort` closes files without
finishing them when the run fails.

The sinks of a run are built from the config by the composition root
(``pipeline.assembly.build_sinks``). The SQLite run store (``pipeline.export.store``)
is one more sink of the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.export.csv_writer import TrajectoryCsvWriter, rewrite_global_ids
from pipeline.export.mot import MotWriter
from pipeline.export.plots import plot_trajectories
from pipeline.export.revisions import RevisionCsvWriter
from pipeline.types import FrameTracks, Identities, Revision, Tracklet

__all__ = ["Sink", "Sinks", "TrajectorySink", "RevisionSink", "MotSink", "PlotSink",
           "VideoSink"]

logger = logging.getLogger(__name__)


class Sink:
    """Base class: every hook does nothing; a sink overrides the ones it needs."""

    def on_rows(self, rows: FrameTracks) -> None:
        """One camera frame's tracks (called per camera frame, in tick order)."""

    def on_revisions(self, revisions: Sequence[Revision]) -> None:
        """Global ids set or changed during the run."""

    def on_tracklets(self, tracklets: Sequence[Tracklet]) -> None:
        """Finished tracklets, when they are handed to association (before the
        revisions that step makes); each carries its pooled embedding and quality."""

    def on_identities(self, identities: Identities) -> None:
        """The final identities of the run (called once, before :meth:`close`)."""

    def flush(self) -> None:
        """Put what is buffered on disk."""

    def close(self) -> dict[str, Any]:
        """Finish the outputs; returns the summary ``outputs`` entries they add."""
        return {}

    def abort(self) -> None:
        """The run failed: close files as they are (whole lines), finish nothing."""


class Sinks(Sink):
    """Several sinks as one: each call goes to every sink, in order."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def on_rows(self, rows: FrameTracks) -> None:
        for sink in self.sinks:
            sink.on_rows(rows)

    def on_revisions(self, revisions: Sequence[Revision]) -> None:
        if revisions:
            for sink in self.sinks:
                sink.on_revisions(revisions)

    def on_tracklets(self, tracklets: Sequence[Tracklet]) -> None:
        if tracklets:
            for sink in self.sinks:
                sink.on_tracklets(tracklets)

    def on_identities(self, identities: Identities) -> None:
        for sink in self.sinks:
            sink.on_identities(identities)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for sink in self.sinks:
            outputs.update(sink.close())
        return outputs

    def abort(self) -> None:
        for sink in self.sinks:
            try:
                sink.abort()
            except Exception:  # noqa: BLE001 - keep closing the others
                logger.exception("closing output %s after a failure", type(sink).__name__)


class TrajectorySink(Sink):
    """The trajectory CSV (schema in ``pipeline.export.csv_writer``).

    Rows are streamed to ``streamed`` with the id known when written; at the end the
    file is copied to ``final`` with every track's final id.

    Args:
        out_dir: Run folder.
        streamed: File name the rows stream into (offline runs: ``tracks_local.csv``,
            ids all -1; online: ``trajectories.csv``, the id known at write time).
        final: File name of the rows with final ids (offline: ``trajectories.csv``;
            online: ``trajectories_final.csv``).
        flush_s: Longest time rows stay in memory.
    """

    def __init__(self, out_dir: Path, *, streamed: str, final: str, flush_s: float) -> None:
        self.out_dir = Path(out_dir)
        self.streamed, self.final = streamed, final
        self._writer = TrajectoryCsvWriter(self.out_dir / streamed, flush_s=flush_s)
        self._identities = Identities(global_of={})

    @property
    def final_path(self) -> Path:
        """The CSV with final ids (complete after :meth:`close`)."""
        return self.out_dir / self.final

    def on_rows(self, rows: FrameTracks) -> None:
        self._writer.write(camera=rows.camera_id, frame=rows.frame_index,
                           timestamp_s=rows.timestamp_s, tracks=rows.tracks,
                           global_ids=rows.global_ids, floor_xy=rows.floor_xy)

    def on_identities(self, identities: Identities) -> None:
        self._identities = identities

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> dict[str, Any]:
        self._writer.close()
        rewrite_global_ids(self.out_dir / self.streamed, self.final_path,
                           self._identities.global_of)
        outputs = {"trajectories": "trajectories.csv"}
        if self.final != "trajectories.csv":
            outputs["trajectories_final"] = self.final
        return outputs

    def abort(self) -> None:
        self._writer.close()


class RevisionSink(Sink):
    """``revisions.csv``: every id assignment and change (schema in ``export.revisions``)."""

    def __init__(self, path: Path, *, flush_s: float) -> None:
        self._writer = RevisionCsvWriter(path, flush_s=flush_s)
        self.name = Path(path).name

    def on_revisions(self, revisions: Sequence[Revision]) -> None:
        self._writer.write(revisions)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> dict[str, Any]:
        self._writer.close()
        return {"revisions": self.name}

    def abort(self) -> None:
        self._writer.close()


class MotSink(Sink):
    """MOTChallenge txt per camera (``mot/<camera>.txt``), local track ids."""

    def __init__(self, out_dir: Path, camera_ids: Sequence[str], *, flush_s: float) -> None:
        self._writers = {cid: MotWriter(Path(out_dir) / "mot" / f"{cid}.txt", flush_s=flush_s)
                         for cid in camera_ids}

    def on_rows(self, rows: FrameTracks) -> None:
        self._writers[rows.camera_id].write(rows.frame_index, rows.tracks)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> dict[str, Any]:
        self.abort()
        return {"mot": {cid: f"mot/{cid}.txt" for cid in self._writers}}

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.close()


class PlotSink(Sink):
    """PNG plots (``plots/trajectories.png``, ``plots/timeline.png``, ``plots/floor.png``)
    of a final CSV.

    Args:
        trajectories: The final trajectory CSV (another sink's, closed before this one).
        out_dir: Run folder.
        plan: Floor-plan image under ``plots/floor.png`` (written when cameras are
            calibrated).
    """

    def __init__(self, trajectories: Path, out_dir: Path, plan: Any = None) -> None:
        self.trajectories, self.out_dir = Path(trajectories), Path(out_dir)
        self.plan = plan

    def close(self) -> dict[str, Any]:
        paths = plot_trajectories(self.trajectories, self.out_dir / "plots", plan=self.plan)
        return {"plots": [str(p.relative_to(self.out_dir)) for p in paths]}


class VideoSink(Sink):
    """Annotated videos, rendered at the end from the sources and a final CSV.

    Args:
        render: ``render(trajectories_csv) -> written paths`` (re-reads the sources).
        trajectories: The final trajectory CSV (closed before this sink).
        out_dir: Run folder.
    """

    def __init__(self, render: Callable[[Path], list[Path]], trajectories: Path,
                 out_dir: Path) -> None:
        self.render, self.trajectories, self.out_dir = render, Path(trajectories), Path(out_dir)

    def close(self) -> dict[str, Any]:
        return {"video": [str(p.relative_to(self.out_dir)) for p in self.render(self.trajectories)]}
