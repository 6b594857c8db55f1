"""Building a run from its configuration (the composition root's construction half).

Everything here turns config sections into components, checking names and keys before
any model loads so a typo fails at once: the association (``ASSOCIATORS`` by mode),
the detector, the embedding policy and crop embedder, one tracker and tracklet builder
per camera, the camera sources, and the output sinks. ``pipeline.runner`` then runs
the loop over what :func:`build_run` returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.association import ASSOCIATORS, Association
from pipeline.calibration import FloorPlan, FloorPositions, calibration_from_config
from pipeline.config import ConfigError, ReidConfig, RunConfig, RunOptions, check_params
from pipeline.executor import (
    Cameras,
    ExecutorContext,
    InProcessCameras,
    Placement,
    in_process,
)
from pipeline.export import sinks as out
from pipeline.export.crops import BestCrops
from pipeline.registry import lookup
from pipeline.runtime import (
    Housekeeping,
    StageTimer,
    live_cameras,
    stop_on_signals,
)

if TYPE_CHECKING:
    from pipeline.tracking import Tracker

__all__ = ["RunParts", "build_association", "build_cameras", "build_component", "build_run",
           "build_sinks", "check_cameras", "check_coupled", "set_threads", "tracker_factory"]

logger = logging.getLogger(__name__)


def build_component(family: dict[str, Any], name: str, params: dict[str, Any], section: str,
                    where: str) -> Any:
    """``family[name](**params)``, with errors that name the section and the file."""
    try:
        cls = lookup(family, name, section)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    check_params(cls, params, section, where)
    return cls(**params)


def tracker_factory(config: RunConfig) -> Callable[[], Tracker]:
    """A maker of the configured per-camera tracker: the ``tracker`` section becomes
    the tracker's options record once, checked here (an unknown key or a bad value is
    a ConfigError naming the key and the file); every camera's tracker shares it."""
    from pipeline.tracking import TRACKERS

    where = config.source_file
    try:
        cls = lookup(TRACKERS, config.tracker.name, "tracker")
        options = cls.options_type.from_params(config.tracker.params)
    except ValueError as error:
        raise ConfigError(f"{where}: tracker: {error}") from None
    return lambda: cls(options)


def check_coupled(config: RunConfig) -> None:
    """Warn about options of two sections that only work together.

    The detector's ``conf`` drops boxes before the tracker sees them: above the
    tracker's ``low_thresh`` its second (low-score) stage loses those boxes. Detections
    below ``reid.min_score`` are not embedded: above the tracker's ``high_thresh``, some
    strong boxes are matched on motion alone and births carry no appearance. Both
    thresholds of the tracker are on its own scale (``score_scale``). With
    ``adaptive_scores: true`` they move with the scores: nothing is checked then.
    """
    from pipeline.tracking import TrackerOptions

    try:
        tracker = TrackerOptions.from_params(config.tracker.params)
    except ValueError:
        return  # reported when the trackers are built
    if tracker.adaptive_scores is True:
        return
    scale = tracker.score_scale
    conf = config.detector.params.get("conf")
    where = config.source_file
    if conf is not None and float(conf) > tracker.low_thresh * scale + 1e-9:
        logger.warning("%s: detector.conf %g is above the tracker's low_thresh %g: boxes "
                       "scoring between them never reach its low-score stage (set conf to "
                       "at most low_thresh)", where, float(conf), tracker.low_thresh * scale)
    if config.reid.enabled and config.reid.min_score > tracker.high_thresh * scale + 1e-9:
        logger.warning("%s: reid.min_score %g is above the tracker's high_thresh %g: strong "
                       "boxes below it are matched without appearance (set min_score to "
                       "at most high_thresh)", where, config.reid.min_score,
                       tracker.high_thresh * scale)


# Names a camera's ``stream`` mapping may not set: camera keys, or set by the runner.
_STREAM_RESERVED = ("camera_id", "uri", "fps", "epoch_s")


def check_cameras(config: RunConfig) -> None:
    """Check every camera's ``stream`` options against ``StreamOptions``.

    Raises:
        ConfigError: Options for a file or folder, a reserved or unknown name, or a bad
            value; the message starts with the config file and names the camera.
    """
    from pipeline.sources import StreamOptions, is_stream_uri

    where = config.source_file
    for index, camera in enumerate(config.cameras):
        if not camera.stream:
            continue
        label = f"cameras[{index}].stream (camera {camera.id!r})"
        if not is_stream_uri(camera.source):
            raise ConfigError(
                f"{where}: {label}: stream options apply only to live sources (rtsp://, "
                f"rtsps://, http(s)://, webcam://N); {camera.source} is a file or folder, so "
                "remove 'stream' from this camera")
        reserved = sorted(set(camera.stream) & set(_STREAM_RESERVED))
        if reserved:
            raise ConfigError(
                f"{where}: {label}: {', '.join(map(repr, reserved))} cannot be set here "
                "(fps is a camera key; the others are set by the runner)")
        try:
            StreamOptions.parse(camera.stream, label)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None


def floor_positions(config: RunConfig) -> FloorPositions:
    """Every camera's ground-plane calibration, parsed and checked (files read, points
    fitted) before any model loads; cameras without one are left out.

    Raises:
        ConfigError: A bad file, unit or key, or degenerate points; names the file, the
            camera and the key.
    """
    calibrations = {}
    for index, camera in enumerate(config.cameras):
        if camera.calibration is None:
            continue
        try:
            calibrations[camera.id] = calibration_from_config(camera.id, camera.calibration)
        except ValueError as error:
            raise ConfigError(f"{config.source_file}: cameras[{index}].calibration (camera "
                              f"{camera.id!r}): {error}") from None
    return FloorPositions(calibrations)


def floor_plan(config: RunConfig) -> FloorPlan | None:
    """``output.floor_plan`` checked (ConfigError names the key), or None."""
    if config.output.floor_plan is None:
        return None
    try:
        return FloorPlan.from_config(config.output.floor_plan)
    except ValueError as error:
        raise ConfigError(f"{config.source_file}: output.floor_plan: {error}") from None


def _ground_terms(params: dict[str, Any], positions: FloorPositions | None,
                  where: str) -> tuple[Any, ...]:
    """The ground cue from ``association.ground`` (popped from ``params``): on by default
    (gate only) when two or more cameras are calibrated; ``ground: false`` turns it off,
    a mapping sets ``FloorCue``'s ``gate_m``, ``weight``, ``time_bin_s``, ``min_common``."""
    from pipeline.association import FloorCue

    ground = params.pop("ground", True)
    if ground is False or positions is None or len(positions.calibrations) < 2:
        return ()
    options = {} if ground is True else ground
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: association.ground must be true, false or a mapping of "
                          f"gate_m, weight, time_bin_s, min_common; got {ground!r}")
    check_params(FloorCue, options, "association.ground", where, exclude=("positions",))
    try:
        return (FloorCue(positions=positions, **options),)
    except ValueError as error:
        raise ConfigError(f"{where}: association.ground: {error}") from None


def build_association(config: RunConfig, live: bool,
                      positions: FloorPositions | None = None) -> Association:
    """The associator of the config's ``association`` section (``mode`` picks it).

    Without ``mode``, live cameras associate online and recordings offline. With two or
    more calibrated cameras (``positions``) the ground cue joins (``association.ground``).
    """
    params = dict(config.association.params)
    mode = str(params.pop("mode", "online" if live else "offline"))
    try:
        cls = lookup(ASSOCIATORS, mode, "association mode")
    except ValueError as error:
        raise ValueError(f"{config.source_file}: {error}") from None
    terms = _ground_terms(params, positions, config.source_file)
    try:
        return cls.from_params(terms=terms, **params)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{config.source_file}: {error}") from None


def reid_identity(reid: ReidConfig) -> dict[str, Any]:
    """What made a run's embeddings: model, weights (absolute path and SHA-256),
    backend, precision, declared input; stored so a later query is embedded alike."""
    from pipeline.reid.runtimes import model_digest

    weights = Path(reid.weights).resolve()
    return {"model": reid.model, "weights": str(weights),
            "sha256": model_digest(weights) if weights.is_file() else None,
            "backend": reid.backend, "precision": reid.precision, "input": reid.input}


def build_sinks(config: RunConfig, out_dir: Path, *, association: Association,
                save_video: bool, flush_s: float, max_frames: int | None,
                plan: FloorPlan | None = None) -> list[out.Sink]:
    """The outputs of a run, in the order they are closed.

    Rows stream with the id known when written; runs whose association gives ids
    during the run (online) stream ``trajectories.csv`` and log ``revisions.csv``, the
    others stream ``tracks_local.csv``; both finish with every row's final id.
    ``output.store`` (default on) adds ``run.sqlite`` (``pipeline.export.store``), closed
    after the CSV so both end with the same ids. ``plan``: the floor-plan image of the
    floor plots and the review page's floor view.
    """
    live_ids = association.snapshot_s is not None
    streamed, final = (("trajectories.csv", "trajectories_final.csv") if live_ids
                       else ("tracks_local.csv", "trajectories.csv"))
    rows = out.TrajectorySink(out_dir, streamed=streamed, final=final, flush_s=flush_s)
    sinks: list[out.Sink] = [rows]
    if live_ids:
        sinks.append(out.RevisionSink(out_dir / "revisions.csv", flush_s=flush_s))
    if config.output.store:
        from pipeline.export.store import STORE_NAME, StoreSink

        sinks.append(StoreSink(out_dir / STORE_NAME, [c.id for c in config.cameras],
                               association=association.mode, final_csv=final,
                               reid=reid_identity(config.reid) if config.reid.enabled else None,
                               floor_plan=None if plan is None else {
                                   "image": str(Path(plan.image).resolve()),
                                   "origin_m": list(plan.origin_m),
                                   "px_per_m": plan.px_per_m, "y_up": plan.y_up}))
    if config.output.mot:
        sinks.append(out.MotSink(out_dir, [c.id for c in config.cameras], flush_s=flush_s))
    if config.output.plots:
        sinks.append(out.PlotSink(rows.final_path, out_dir, plan))
    if save_video:
        from pipeline.export import render_videos

        def render(csv: Path) -> list[Path]:
            return render_videos(config=config, trajectories=csv, out_dir=out_dir / "video",
                                 max_frames=max_frames)
        sinks.append(out.VideoSink(render, rows.final_path, out_dir))
    return sinks


def set_threads(threads: int | None) -> int:
    import torch

    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    return torch.get_num_threads()


@dataclass
class RunParts:
    """What a run is made of (built by :func:`build_run`)."""

    live: bool
    association: Association
    floor: FloorPositions  # calibrated cameras' floor positions (may hold none)
    cameras: Cameras  # InProcessCameras, or pipeline.ray_executor.RayCameras
    sources: list[Any]
    camera_set: Any
    ticks: Any
    sinks: out.Sinks
    house: Housekeeping
    timer: StageTimer
    device: str
    threads: int
    stop: threading.Event
    interrupted: list[str]
    wall_start: float = field(default_factory=time.perf_counter)  # perf_counter() at start


def _camera_detector(config: RunConfig, device: str) -> Any:
    """The configured detector wrapped with each camera's detection options.

    Input size, tiles and ROI per camera (``pipeline.detection.views``; cameras without a
    ``detection`` mapping get the defaults). Cameras whose plan is the detector's own
    input on the whole frame share one call to the configured detector, as before.
    """
    from pipeline.detection import DETECTORS
    from pipeline.detection.multiview import CameraDetector

    where = config.source_file
    params = {"device": device, **config.detector.params}
    base = build_component(DETECTORS, config.detector.name, params, "detector", where)
    return CameraDetector(
        base=base, views=camera_views(config), where=where,
        make_detector=lambda imgsz: build_component(
            DETECTORS, config.detector.name, {**params, "imgsz": imgsz}, "detector", where))


def camera_views(config: RunConfig) -> dict[str, Any]:
    """Each camera's ``ViewOptions`` from its ``detection`` mapping (defaults without one).

    Raises:
        ConfigError: An unknown key or a bad value; names the file and the camera.
    """
    from pipeline.detection.views import ViewOptions

    names = {f.name for f in fields(ViewOptions)}
    views = {}
    for index, camera in enumerate(config.cameras):
        data = dict(camera.detection or {})
        label = f"cameras[{index}].detection (camera {camera.id!r})"
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{config.source_file}: unknown key(s) "
                              f"{', '.join(map(repr, unknown))} in {label}; allowed: "
                              f"{', '.join(sorted(names))}")
        try:
            views[camera.id] = ViewOptions(**data)
        except ValueError as error:
            raise ConfigError(f"{config.source_file}: {label}: {error}") from None
    return views


def embedding_policy(config: RunConfig) -> Any:
    """The ``reid`` section's ``EmbeddingPolicy`` (its fields are the policy's, by
    name), checked; None when re-id is disabled.

    Raises:
        ConfigError: a value out of range (names the file).
    """
    if not config.reid.enabled:
        return None
    from pipeline.reid.policy import EmbeddingPolicy

    try:
        return EmbeddingPolicy(**{f.name: getattr(config.reid, f.name)
                                  for f in fields(EmbeddingPolicy)})
    except ValueError as error:
        raise ConfigError(f"{config.source_file}: reid: {error}") from None


def _embedding(config: RunConfig, device: str, threads: int, camera_ids: list[str]) -> Any:
    """The embedding policy with its crop embedder; None when re-id is disabled."""
    policy = embedding_policy(config)
    if policy is None:
        return None
    from pipeline.reid.embedder import CropEmbedder
    from pipeline.reid.policy import PolicyEmbedder

    try:
        embedder = CropEmbedder(model=config.reid.model, weights=Path(config.reid.weights),
                                device=device, batch_size=config.reid.batch_size,
                                threads=threads, precision=config.reid.precision,
                                backend=config.reid.backend, input_spec=config.reid.input)
    except ValueError as error:
        raise ValueError(f"{config.source_file}: reid: {error}") from None
    from pipeline.sources import is_stream_uri

    if live_cameras(config, is_stream_uri):
        embedder.warm_up()  # an endless run pays its compiles, and their memory, up front
    return PolicyEmbedder(embedder=embedder, camera_ids=camera_ids, policy=policy)


def build_cameras(config: RunConfig, camera_ids: list[str], *, device: str, threads: int,
                  timer: StageTimer, outage_reset_s: float | None) -> InProcessCameras:
    """The per-camera work of ``camera_ids`` (all of a run's cameras, or the group one
    Ray actor hosts): detector, embedding policy and embedder, one tracker and tracklet
    builder per camera. Loading the models resets torch's thread count: set again here.
    """
    from pipeline.tracking import TrackletBuilder
    from pipeline.tracking.camera_motion import CameraMotion

    where = config.source_file
    threads = set_threads(threads)  # in a Ray actor this is the first thing set
    make_tracker = tracker_factory(config)
    embedding = _embedding(config, device, threads, camera_ids)
    detector = _camera_detector(config, device)
    set_threads(threads)  # importing ultralytics resets torch's thread count
    check_params(TrackletBuilder, dict(config.tracklets), "tracklets", where,
                 exclude=("camera_id", "fps"))
    return InProcessCameras(
        detector=detector, embedding=embedding, timer=timer,
        trackers={cid: make_tracker() for cid in camera_ids},
        builders={cid: TrackletBuilder(camera_id=cid, **config.tracklets) for cid in camera_ids},
        outage_reset_s=outage_reset_s,
        crops=BestCrops() if config.output.store else None,
        motions={c.id: CameraMotion(mode=c.motion) for c in config.cameras
                 if c.id in camera_ids and c.motion != "off"},
        detect_every=config.detect_every)


def build_run(config: RunConfig, out_dir: Path, options: RunOptions, stack: ExitStack,
              executor: Callable[[ExecutorContext], Placement] = in_process) -> RunParts:
    """Build every component of a run; sources and sinks are closed by ``stack``.

    Args:
        config: The run configuration.
        out_dir: Existing output folder.
        options: The run's ``RunOptions`` (command-line overrides).
        stack: Owns the sources, the signal handlers and the sinks' failure path.
        executor: Places the cameras' work: ``ExecutorContext -> Placement``
            (``pipeline.executor.in_process``, or ``pipeline.ray_executor.on_ray``).
    """
    from pipeline.sources import is_stream_uri

    live = live_cameras(config, is_stream_uri)
    check_cameras(config)  # before any model loads, so a typo fails at once
    camera_views(config)
    tracker_factory(config)
    embedding_policy(config)
    check_coupled(config)
    floor = floor_positions(config)
    plan = floor_plan(config)
    association = build_association(config, live, floor)
    device = options.device or config.device
    threads = set_threads(options.threads if options.threads is not None else config.threads)
    save_video = config.output.save_video if options.save_video is None else options.save_video
    if live and save_video:
        logger.warning("annotated video is not rendered for live cameras (it re-reads the "
                       "sources); use the trajectories instead")
        save_video = False
    timer = StageTimer()
    stop = threading.Event()
    interrupted = stack.enter_context(stop_on_signals(stop, options.handle_signals))
    context = ExecutorContext(config=config, options=options, live=live,
                              association=association, make_cameras=partial(build_cameras,
                                                                            config),
                              device=device, threads=threads, timer=timer, stop=stop,
                              stack=stack)
    placed = executor(context)
    sources, camera_set = placed.sources, placed.camera_set
    for index, source in enumerate(sources):
        try:  # live sources without a frame yet are checked at their first frame
            floor.check(source.camera_id, getattr(source, "size_wh", (0, 0)))
        except ValueError as error:
            raise ConfigError(f"{config.source_file}: cameras[{index}]: {error}") from None
    sinks = out.Sinks(build_sinks(config, out_dir, association=association, save_video=save_video,
                              flush_s=options.flush_s, max_frames=options.max_frames,
                              plan=plan))
    stack.push(lambda kind, *_: sinks.abort() if kind is not None else None)
    ticks = iter(camera_set)
    if config.decode_ahead and not live and executor is in_process:
        from pipeline.sources.ahead import DecodeAhead

        ticks = stack.enter_context(DecodeAhead(ticks, config.decode_ahead))
    house = Housekeeping(flush_s=options.flush_s, health_interval_s=options.health_interval_s,
                         camera_set=camera_set, sinks=sinks)
    return RunParts(live=live, association=association, floor=floor, cameras=placed.cameras,
                    sources=sources, camera_set=camera_set, ticks=ticks, sinks=sinks,
                    house=house, timer=timer, device=device, threads=threads, stop=stop,
                    interrupted=interrupted, wall_start=placed.wall_start)
