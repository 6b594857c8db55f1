"""Run configuration: strict YAML mapped onto frozen dataclasses.

Only the composition root (``pipeline.runner``) reads configuration; components
take keyword-only constructor arguments. Defaults live in code: a section's
``params`` holds only what the YAML overrides, and those names are checked
against the chosen component's constructor when the runner builds it
(:func:`check_params`), so a typo fails before any frame is read.

Relative paths in a config file are resolved against the file's folder.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pipeline.types import renamed_to_seconds

__all__ = [
    "ConfigError",
    "CameraConfig",
    "ComponentConfig",
    "ReidConfig",
    "AssociationConfig",
    "OutputConfig",
    "ExecutorConfig",
    "EXECUTORS",
    "RunConfig",
    "RunOptions",
    "load_config",
    "check_params",
]


class ConfigError(ValueError):
    """A configuration file is missing, malformed or names something unknown."""


@dataclass(frozen=True)
class CameraConfig:
    """One camera.

    Attributes:
        id: Unique camera name.
        source: Video file, image folder, or live stream (``rtsp://``, ``rtsps://``,
            ``http(s)://``, ``webcam://N``).
        fps: Frame rate override (image folders need one unless a ``seqinfo.ini``
            gives it; live: the tick pace instead of the rate the stream reports).
        stream: Live sources only: the fields of ``pipeline.sources.StreamOptions``
            (timeouts, queue size, backoff, RTSP transport); the sources check names
            and values when a run is built, before any model loads
            (``pipeline.assembly.check_cameras``).
        detection: How this camera's frames are detected: the fields of
            ``pipeline.detection.views.ViewOptions`` (``imgsz``, ``min_scale``,
            ``max_side``, ``tiles``, ``tile_overlap_px``, ``merge_iou``, ``roi``,
            ``roi_crop``), kept as a mapping and checked when a run is built, before any
            model loads (``pipeline.assembly.check_cameras``); None = the defaults.
        calibration: The camera's ground-plane calibration (``pipeline.calibration``):
            ``points`` (>= 4 ``[u_px, v_px, x_m, y_m]``) or ``intrinsics`` + ``extrinsics``
            (OpenCV XML files, relative to the config file) with ``unit``; checked when a
            run is built. None = no floor positions for this camera.
        motion: Camera-motion compensation for its tracker
            (``pipeline.tracking.camera_motion``): ``auto`` (a check a second, every
            frame while the camera moves), ``on`` (a moving camera: every frame) or
            ``off``.
    """

    id: str
    source: str
    fps: float | None = None
    stream: Mapping[str, Any] = field(default_factory=dict)
    detection: Mapping[str, Any] | None = None
    calibration: Mapping[str, Any] | None = None
    motion: str = "auto"


def _camera(raw: Any, index: int, base_dir: Path, where: str) -> CameraConfig:
    section = f"cameras[{index}]"
    cam = _dataclass_from(CameraConfig, _mapping(raw, section, where), section, where)
    source = _resolve(str(cam.source), base_dir)
    options = _mapping(cam.stream, f"{section}.stream", where)
    detection = (None if cam.detection is None else
                 _mapping(cam.detection, f"{section}.detection (camera {cam.id!r})", where))
    calibration = None
    if cam.calibration is not None:
        calibration = _mapping(cam.calibration, f"{section}.calibration (camera {cam.id!r})",
                               where)
        for key in ("intrinsics", "extrinsics"):
            if key in calibration:
                calibration[key] = _resolve(str(calibration[key]), base_dir)
    # YAML reads a bare on / off as true / false.
    motion = ("on" if cam.motion else "off") if isinstance(cam.motion, bool) else cam.motion
    if motion not in ("auto", "on", "off"):
        raise ConfigError(f"{where}: {section}.motion (camera {cam.id!r}): got "
                          f"{cam.motion!r}; choose auto, on or off")
    return CameraConfig(id=str(cam.id), source=source, fps=cam.fps, stream=options,
                        detection=detection, calibration=calibration, motion=motion)


@dataclass(frozen=True)
class ComponentConfig:
    """A component chosen by ``name`` from its family dict, with constructor overrides."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReidConfig:
    """Appearance embedding of detections and tracklets.

    Attributes:
        model: Key of ``REID_MODELS``; must match the model named inside ``weights``.
        weights: safetensors file written by ``mtmc reid train``.
        batch_size: Crops per model call (all cameras of a tick share batches).
        min_score: Detections below this score are not embedded (they still track by IoU).
        min_height_px: Crops shorter than this are not embedded (too little detail).
        enabled: False runs motion-only tracking and skips cross-camera association.
        precision: "fp32" or "bf16" arithmetic for the re-id model (torch autocast or
            OpenVINO inference precision), or "int8" (OpenVINO: the NNCF-quantised IR
            beside ``weights``, made by ``tools/quantize_openvino.py``).
        backend: "torch", "openvino" (the safetensors file is converted at start-up)
            or "onnx" (weights must then be an exported .onnx file).
        refresh_s: A detection that clearly continues a track, with no other
            person near, is re-embedded only when the track's last embedding is this
            many seconds old; births and ambiguous detections are always embedded.
            0 embeds every eligible detection (see ``pipeline.reid.schedule``).
        max_crops_per_frame: Crop budget per camera frame, shared by a tick's cameras:
            births first, then crowded detections, then the stalest refreshes (see
            ``pipeline.reid.policy``); null = no budget.
        ambiguity_iou: Overlap with another detection above which a detection is
            crowded and embedded every frame (``pipeline.reid.policy``).
        input: What a peer model file (an OpenVINO ``.xml`` or ``.onnx``) expects of its
            input pixels: a preset (``imagenet``; ``bgr255`` for Intel's Open Model Zoo
            re-id IRs) or a mapping ``{colour_order, scale, mean, std}``; null = a
            ``<stem>.input.json`` beside the file, else ``imagenet`` (our models).
    """

    model: str = "hacnn"
    weights: str = "weights/hacnn_cuhk.safetensors"
    batch_size: int = 32
    min_score: float = 0.4
    min_height_px: float = 32.0
    enabled: bool = True
    precision: str = "fp32"
    backend: str = "torch"
    refresh_s: float = 0.0
    max_crops_per_frame: float | None = None
    ambiguity_iou: float = 0.1
    input: str | Mapping[str, Any] | None = None


@dataclass(frozen=True)
class AssociationConfig:
    """Offline cross-camera association (see ``pipeline.association``)."""

    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputConfig:
    """What a run writes besides ``trajectories.csv`` and ``summary.json``."""

    mot: bool = True
    plots: bool = True
    save_video: bool = False
    # run.sqlite (pipeline.export.store): rows, tracklets, identities, best crops; what
    # `mtmc query` and `mtmc review` read.
    store: bool = True
    # A floor-plan image under the floor-position plots and the review page's floor view:
    # {image: PATH, origin_m: [x, y] (floor point of the image's top-left corner),
    # px_per_m: N, y_up: false}; None = paths on a plain metric grid.
    floor_plan: Mapping[str, Any] | None = None


EXECUTORS = ("inprocess", "ray")
"""Where the cameras' per-frame work runs: this process, or Ray actors."""


@dataclass(frozen=True)
class ExecutorConfig:
    """The ``executor`` section: where the cameras' work runs (``pipeline.ray_executor``).

    Attributes:
        name: ``inprocess`` (default) or ``ray``.
        address: Ray cluster to join: ``local`` starts Ray on this machine for the run,
            ``auto`` joins the cluster started here with ``ray start``, ``HOST:PORT`` a
            head node's GCS address.
        workers: Ray actors (worker processes) the cameras are spread over, round robin;
            None = one per camera.
        num_cpus_per_worker: Ray CPUs each actor reserves (fractions allowed).
        threads: Torch/OpenVINO threads inside each actor.
        max_restarts: How often Ray restarts a dead actor before the run fails.
        in_flight: Batches of results per actor not yet consumed by the driver (the
            bound on what a slow association leaves buffered).
        batch_frames: Frames per camera in one batch an actor returns.
        batch_s: Live cameras: the longest an actor waits to fill one batch (seconds).
        checkpoint_frames: Frames between two checkpoints of an actor's tracker state
            (a restarted actor resumes from the last one).
        object_store_mb: Object store of a ``local`` Ray (MB).
    """

    name: str = "inprocess"
    address: str = "local"
    workers: int | None = None
    num_cpus_per_worker: float = 1.0
    threads: int = 1
    max_restarts: int = 3
    in_flight: int = 2
    batch_frames: int = 8
    batch_s: float = 0.5
    checkpoint_frames: int = 40
    object_store_mb: int = 150

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise ValueError(f"executor.name must be one of {', '.join(EXECUTORS)}, "
                             f"got {self.name!r}")
        positive = {"threads": self.threads, "in_flight": self.in_flight,
                    "batch_frames": self.batch_frames,
                    "checkpoint_frames": self.checkpoint_frames,
                    "object_store_mb": self.object_store_mb}
        if self.workers is not None:
            positive["workers"] = self.workers
        for key, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"executor.{key} must be >= 1, got {value}")
        if not self.batch_s > 0:
            raise ValueError(f"executor.batch_s must be > 0, got {self.batch_s}")
        if not self.num_cpus_per_worker > 0:
            raise ValueError("executor.num_cpus_per_worker must be > 0, got "
                             f"{self.num_cpus_per_worker}")
        if int(self.max_restarts) < 0:
            raise ValueError(f"executor.max_restarts must be >= 0, got {self.max_restarts}")


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``mtmc run`` needs. Built by :func:`load_config`.

    ``decode_ahead``: recorded cameras only, ticks decoded ahead on a thread while the
    networks work (``pipeline.sources.ahead``); 0 decodes in the loop.

    ``detect_every`` (``detector.every`` in the file): the detector runs on every N-th
    frame of each camera; the trackers predict the frames between (1 = every frame).
    """

    cameras: tuple[CameraConfig, ...]
    detector: ComponentConfig
    tracker: ComponentConfig
    reid: ReidConfig
    tracklets: Mapping[str, Any]
    association: AssociationConfig
    output: OutputConfig
    device: str = "cpu"
    threads: int | None = None
    decode_ahead: int = 0
    detect_every: int = 1
    source_file: str = "<dict>"
    executor: ExecutorConfig = ExecutorConfig()


_TOP_KEYS = {
    "cameras", "detector", "tracker", "reid", "tracklets", "association", "output",
    "device", "threads", "decode_ahead", "executor",
}


@dataclass(frozen=True)
class RunOptions:
    """Command-line overrides of a config for one run.

    Attributes:
        max_frames: Stop after this many ticks.
        duration_s: Stop after this many wall-clock seconds (live cameras, or any run).
        health_interval_s: Seconds between health log lines of live cameras.
        flush_s: Longest time written rows stay in memory before reaching the files.
        stream_options: ``StreamSource`` keyword arguments for every live camera
            (timeouts, backoff, queue size); they override each camera's ``stream``.
        outage_reset_s: A live camera silent this long has its tracks ended (so a
            person seen after the outage is not glued to a track from before it).
        handle_signals: SIGINT/SIGTERM stop the run cleanly (main thread only).
        ray_address: Run the cameras on Ray (``pipeline.ray_executor``): ``""`` = the
            config's ``executor.address`` (default ``local``), else an address; None =
            as the config's ``executor.name`` says.
        inject_worker_crash: Tests only: ``(camera, frame index)`` at which the first
            incarnation of that camera's Ray worker exits its process.
    """

    max_frames: int | None = None
    save_video: bool | None = None
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    duration_s: float | None = None
    health_interval_s: float = 30.0
    flush_s: float = 2.0
    stream_options: Mapping[str, Any] | None = None
    outage_reset_s: float = 3.0
    handle_signals: bool = True
    ray_address: str | None = None
    inject_worker_crash: tuple[str, int] | None = None


def _check_keys(section: str, data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    renamed = renamed_to_seconds(unknown)
    if renamed:
        raise ConfigError(f"{where}: {section}: {renamed}")
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} in {section}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _mapping(value: Any, section: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {section} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _dataclass_from(cls: type, data: Mapping[str, Any], section: str, where: str) -> Any:
    names = {f.name for f in fields(cls)}
    _check_keys(section, data, names, where)
    try:
        return cls(**data)
    except TypeError as exc:  # missing required field
        raise ConfigError(f"{where}: {section}: {exc}") from None


def _resolve(path: str, base: Path) -> str:
    if "://" in path:  # stream URL, not a file
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _component(data: Any, section: str, default_name: str, where: str) -> ComponentConfig:
    params = _mapping(data, section, where)
    name = str(params.pop("name", default_name))
    return ComponentConfig(name=name, params=params)


def config_from_dict(data: Mapping[str, Any], *, base_dir: Path, where: str) -> RunConfig:
    """Build a :class:`RunConfig` from parsed YAML; ``where`` names the file in errors."""
    data = _mapping(data, "the top level", where)
    _check_keys("the top level", data, _TOP_KEYS, where)
    raw_cameras = data.get("cameras")
    if not raw_cameras or not isinstance(raw_cameras, list):
        raise ConfigError(f"{where}: 'cameras' must be a non-empty list of {{id, source}}")
    cameras = []
    for i, raw in enumerate(raw_cameras):
        cameras.append(_camera(raw, i, base_dir, where))
    ids = [c.id for c in cameras]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: camera ids must be unique, got {ids}")

    detector = _component(data.get("detector"), "detector", "yolo", where)
    if "weights" in detector.params:
        detector = ComponentConfig(
            name=detector.name,
            params={**detector.params, "weights": _resolve(str(detector.params["weights"]),
                                                           base_dir)},
        )
    params = dict(detector.params)
    detect_every = params.pop("every", 1)
    if isinstance(detect_every, bool) or not isinstance(detect_every, int) or detect_every < 1:
        raise ConfigError(f"{where}: detector.every must be an integer >= 1 (run the detector "
                          f"on every N-th frame of each camera; 1 = every frame), got "
                          f"{detect_every!r}")
    detector = ComponentConfig(name=detector.name, params=params)
    tracker = _component(data.get("tracker"), "tracker", "bytetrack", where)
    reid = _dataclass_from(ReidConfig, _mapping(data.get("reid"), "reid", where), "reid", where)
    reid = ReidConfig(**{**reid.__dict__, "weights": _resolve(reid.weights, base_dir)})
    association = AssociationConfig(params=_mapping(data.get("association"), "association",
                                                    where))
    output = _dataclass_from(OutputConfig, _mapping(data.get("output"), "output", where),
                             "output", where)
    if output.floor_plan is not None:
        plan = _mapping(output.floor_plan, "output.floor_plan", where)
        if "image" in plan:
            plan["image"] = _resolve(str(plan["image"]), base_dir)
        output = OutputConfig(**{**output.__dict__, "floor_plan": plan})
    threads = data.get("threads")
    decode_ahead = data.get("decode_ahead", 0)
    if isinstance(decode_ahead, bool) or not isinstance(decode_ahead, int) or decode_ahead < 0:
        raise ConfigError(f"{where}: decode_ahead must be an integer >= 0 (ticks decoded "
                          f"ahead; 0 = off), got {decode_ahead!r}")
    try:
        executor = _dataclass_from(ExecutorConfig, _mapping(data.get("executor"), "executor",
                                                            where), "executor", where)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
    return RunConfig(
        cameras=tuple(cameras),
        detector=detector,
        tracker=tracker,
        reid=reid,
        tracklets=_mapping(data.get("tracklets"), "tracklets", where),
        association=association,
        output=output,
        detect_every=detect_every,
        device=str(data.get("device", "cpu")),
        threads=None if threads is None else int(threads),
        decode_ahead=decode_ahead,
        source_file=where,
        executor=executor,
    )


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration.

    Raises:
        ConfigError: the file is missing or not YAML, a key is unknown (the
            message names the key and the file), or a required field is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass a YAML file such as "
                          "configs/sample.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return config_from_dict(data or {}, base_dir=path.resolve().parent, where=str(path))


def check_params(target: Any, params: Mapping[str, Any], section: str, where: str,
                 exclude: Collection[str] = ()) -> None:
    """Fail if ``params`` names an argument that ``target``'s constructor does not take.

    Args:
        target: A class (or callable) whose keyword arguments the section configures.
        params: The overrides from the config file.
        section: Config section name, for the message.
        where: Config file name, for the message.
        exclude: Arguments the section may not set (the caller sets them).
    """
    signature = inspect.signature(target)
    accepted = {
        name for name, p in signature.parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name != "self"
        and name not in exclude
    }
    if any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    _check_keys(section, params, accepted, where)
