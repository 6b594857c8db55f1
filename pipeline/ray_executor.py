"""Cameras on a Ray cluster: the executor seam's second implementation.

``mtmc run CONFIG --ray [ADDRESS]`` (or ``executor: {name: ray}``) spreads the cameras
over Ray actors (:class:`~pipeline.ray_worker.CameraWorker`, ``executor.workers`` of
them, round robin; default one per camera). Each owns its cameras end to end — decode,
detect, embed, track, tracklets — and returns compact updates (track ids, boxes, scores
per frame; tracklets with pooled embeddings when the association is due), never frames.
This process (the driver) keeps the association and the sinks: :class:`RayCameras` has
the three methods of :class:`~pipeline.executor.InProcessCameras` (``process``,
``events``, ``finish``), so ``pipeline.runner``'s loop, the associators and the sinks
are the ones of a single-process run.

* **Ticks.** Recorded cameras are merged by the same ``CameraSet`` alignment as a local
  run, over :class:`_RemoteCamera` proxies that read their actor's batches; live
  cameras by ``live_ticks`` (wall clock), each actor pacing its own streams.
* **Back-pressure.** At most ``in_flight`` calls per actor are outstanding and a proxy
  asks for more only when its buffer is short, so a slow association stalls the actors
  instead of filling memory: recordings simply wait, live sources drop their oldest
  frames (counted in the cameras' ``health``: ``dropped``). The driver drops nothing.
* **Faults.** Actors are created with ``max_restarts``. When a call fails because its
  actor died, the driver hands the restarted actor the last checkpoint and each
  camera's next frame index; recordings replay from there and the driver drops what it
  had already received (nothing written twice, nothing lost), live cameras reconnect.
  Restarts are counted per camera (``summary.json``: ``cameras[].restarts``).

``import ray`` happens only when a run asks for Ray.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from pipeline.executor import ExecutorContext, Placement, read_order
from pipeline.ray_worker import WORKER_ENV, Batch, CameraWorker, NotResumed, WorkerPlan
from pipeline.types import CameraUpdate, TrackKey, Tracklet, Tracks

__all__ = ["RayCameras", "connect", "import_ray", "on_ray"]

logger = logging.getLogger(__name__)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds the package
_EPS_S = 1e-6


def import_ray() -> Any:
    """``import ray``, or one clear error saying how to get it."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray / executor 'ray' needs Ray, which is not installed here: "
                           "pip install 'mtmc-pipeline[ray]' (or pip install 'ray>=2.9'), "
                           "or run without --ray") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``HOST:PORT`` nobody listens on (``ray.init`` retries for long)."""
    host, _, port = address.rpartition(":")
    if address.startswith("ray://"):
        host, _, port = address[len("ray://"):].rpartition(":")
    if not host or not port.isdigit():
        raise RuntimeError(f"bad Ray address {address!r}: give HOST:PORT of the head node "
                           "(printed by `ray start --head`), 'auto' for the cluster started "
                           "on this machine, or 'local'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise RuntimeError(f"cannot reach the Ray head at {address} ({error.strerror or error}); "
                           "start it there with `ray start --head`, check the address, or "
                           "use --ray local") from None


def connect(address: str, *, num_cpus: float, object_store_mb: int) -> tuple[Any, bool]:
    """Join (or, for ``local``, start) a Ray cluster for this run.

    Args:
        address: ``local`` (start Ray on this machine for the run), ``auto`` or
            ``HOST:PORT`` / ``ray://HOST:PORT`` (join a running cluster).
        num_cpus: CPUs a ``local`` Ray advertises.
        object_store_mb: Object store of a ``local`` Ray.

    Returns:
        ``(ray, started)``: the module, and whether this call started Ray (so the run
        shuts it down again).

    Raises:
        RuntimeError: Ray missing, a bad or unreachable address (one line).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    path = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)
    runtime_env = {"env_vars": {**WORKER_ENV, "PYTHONPATH": path}}
    common = {"runtime_env": runtime_env, "log_to_driver": True, "configure_logging": False}
    if address == "local":
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_mb * 1024 * 1024,
                 include_dashboard=False, **common)
        return ray, True
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **common)
    except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"cannot join the Ray cluster at {address}: {first}; start one with "
                           "`ray start --head` or use --ray local") from None
    return ray, True



def _cause(error: BaseException) -> str:
    """The last line of a Ray error (its traceback text ends with the cause)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


class _Group:
    """The driver's side of one actor: calls in flight, per-camera buffers, restarts."""

    def __init__(self, ray: Any, handle: Any, plan: WorkerPlan, *, in_flight: int,
                 max_restarts: int, live: bool, until_s: float | None) -> None:
        self.ray, self.handle, self.plan = ray, handle, plan
        self.in_flight, self.max_restarts, self.live = in_flight, max_restarts, live
        self.until_s = until_s
        self.wall_epoch_s: float | None = None  # live cameras: the run's clock origin
        self.pending: deque[Any] = deque()
        self.buffers: dict[str, deque[CameraUpdate]] = {c: deque() for c in plan.camera_ids}
        self.received = dict.fromkeys(plan.camera_ids, -1)
        self.checkpoint: bytes | None = None
        self.next_index = dict.fromkeys(plan.camera_ids, 0)
        self.done = False
        self.limited: set[str] = set()  # cameras stopped by the tick limit, not their end
        self.restarts = 0
        # What crossed from the actor (pickled sizes): updates, and checkpoints.
        self.update_bytes = self.checkpoint_bytes = 0
        self.health: dict[str, dict[str, Any]] = {}
        self.info: dict[str, Any] = {}
        # Per camera, the worker's tracking fields, from ``finish`` (InProcessCameras).
        self.camera_fields: dict[str, dict[str, Any]] = {}

    def start(self) -> Any:
        """First call of the actor's loop (a ref: start every actor, then wait)."""
        return self.handle.resume.remote(None, self.next_index, self.until_s, None,
                                         self.wall_epoch_s)

    def _fill(self) -> None:
        room = self.in_flight * self.plan.batch_frames * len(self.buffers)
        while not self.done and len(self.pending) < self.in_flight and \
                sum(len(b) for b in self.buffers.values()) < room:
            self.pending.append(self.handle.next_batch.remote())

    def pull(self, wait: bool = True) -> None:
        """Take the oldest batch (``wait=False``: only if it is ready)."""
        self._fill()
        if not self.pending:
            return
        if not wait and not self.ray.wait([self.pending[0]], timeout=0)[0]:
            return
        try:
            batch = self.ray.get(self.pending[0])
        except (self.ray.exceptions.RayActorError, NotResumed) as error:
            self._recover(error)  # died during the call, or restarted while idle
            return
        self.pending.popleft()
        self._accept(batch)

    def _accept(self, batch: Batch) -> None:
        self.update_bytes += len(pickle.dumps(batch.updates, protocol=5))
        self.checkpoint_bytes += len(batch.checkpoint or b"")
        for update in batch.updates:
            cid = update.camera_id
            if not self.live and update.index <= self.received[cid]:
                continue  # replayed after a restart: already handed on
            self.received[cid] = update.index
            self.buffers[cid].append(update)
        if batch.checkpoint is not None:
            self.checkpoint, self.next_index = batch.checkpoint, batch.next_index
        self.health.update(batch.health)
        self.limited |= set(batch.limited)
        if batch.done:
            self.done = True
            self.pending.clear()

    def _recover(self, error: BaseException, stop_at: dict[str, int] | None = None) -> None:
        """The actor died: count it, hand the restarted one the last checkpoint."""
        self.restarts += 1
        cameras = ", ".join(self.plan.camera_ids)
        if self.restarts > self.max_restarts:
            raise RuntimeError(f"the Ray worker of camera(s) {cameras} died "
                               f"{self.restarts} times (executor.max_restarts "
                               f"{self.max_restarts}): {_cause(error)}")
        logger.warning("Ray worker of camera(s) %s died (%s); restart %d, resuming from the "
                       "checkpoint at frame %s", cameras, _cause(error), self.restarts,
                       self.next_index)
        self.pending.clear()
        # Live cameras number their frames on after the last one received (the stream
        # goes on; the checkpoint only restores the trackers).
        start = {c: i + 1 for c, i in self.received.items()} if self.live else self.next_index
        errors = self.ray.exceptions
        for _ in range(60):  # the restarted actor reloads its models first
            try:
                self.ray.get(self.handle.resume.remote(self.checkpoint, start,
                                                       self.until_s, stop_at,
                                                       self.wall_epoch_s))
                self.info = {**self.info, **self.ray.get(self.handle.info.remote())}
                return
            except errors.ActorUnavailableError:  # restarting, or unreachable for now
                time.sleep(1.0)
            except errors.RayActorError as dead:  # Ray gave up on it (max_restarts)
                raise RuntimeError(f"the Ray worker of camera(s) {cameras} could not be "
                                   f"restarted: {_cause(dead)}") from None
        raise RuntimeError(f"the Ray worker of camera(s) {cameras} did not come back "
                           "within 60 s")

    def finish(self) -> dict[str, Any]:
        while True:
            try:
                return self.ray.get(self.handle.finish.remote())
            except (self.ray.exceptions.RayActorError, NotResumed) as error:
                # Recordings replay up to what was received, so the tracklets match the
                # rows; a live stream has nothing to replay (and never ends): the
                # restarted worker finishes from its checkpoint.
                self._recover(error, stop_at=None if self.live else dict(self.received))
                if self.live:
                    continue
                self.done = False
                while not self.done:
                    self.pull()
                for buffer in self.buffers.values():
                    buffer.clear()


class _RemoteCamera:
    """A camera whose frames are processed by an actor: iterating yields its updates."""

    def __init__(self, group: _Group, camera_id: str, fps: float,
                 frame_count: int | None) -> None:
        self.group, self.camera_id, self.fps, self.frame_count = group, camera_id, fps, \
            frame_count

    @property
    def period_s(self) -> float:
        return 1.0 / self.fps

    def __iter__(self) -> Iterator[CameraUpdate]:
        buffer = self.group.buffers[self.camera_id]
        while True:
            if buffer:
                yield buffer.popleft()
            elif self.group.done:
                if self.camera_id in self.group.limited:
                    # Stopped by the tick limit: a frame due after it, so the camera set
                    # stops at its limit and does not record this camera as ended.
                    yield CameraUpdate(camera_id=self.camera_id, index=-1,
                                       timestamp_s=1e9, size_wh=(0, 0), tracks=Tracks.empty())
                return
            else:
                self.group.pull()

    def latest(self) -> CameraUpdate | None:
        """Live cameras: the oldest update not yet taken (the driver drops none)."""
        buffer = self.group.buffers[self.camera_id]
        if not buffer:
            self.group.pull(wait=False)
        return buffer.popleft() if buffer else None

    def close(self) -> None:
        pass


class _LiveRemoteSet:
    """Wall-clock ticks over live remote cameras (the ``CameraSet`` of a live run)."""

    live = True

    def __init__(self, cameras: list[_RemoteCamera], groups: list[_Group], *, stop: Any,
                 duration_s: float | None, max_ticks: int | None, start_s: float) -> None:
        self.cameras, self.groups = cameras, groups
        self.stop, self.duration_s, self.max_ticks, self.start_s = stop, duration_s, \
            max_ticks, start_s
        self.dropped: dict[str, int] = {}
        self.ended: dict[str, int] = {}

    def __iter__(self) -> Iterator[list[Any]]:
        from pipeline.sources import live_ticks

        return live_ticks(self.cameras, period_s=min(c.period_s for c in self.cameras),
                          stop=self.stop, duration_s=self.duration_s,
                          max_ticks=self.max_ticks, yield_empty=True, start_s=self.start_s)

    def health(self) -> dict[str, dict[str, Any]]:
        return {c: h for g in self.groups for c, h in g.health.items()}

    def close(self) -> None:
        pass


class _ReidCounts:
    """The embedding counters of all actors, summed; ``stats`` are the single-process
    ``PolicyEmbedder.stats`` of the sums (``budget``: a crop budget is set)."""

    def __init__(self, budget: bool = False) -> None:
        self.budget = budget
        self.eligible = self.embedded = self.deferred = 0

    def add(self, counts: dict[str, int]) -> None:
        for name, value in counts.items():
            setattr(self, name, getattr(self, name, 0) + value)

    def stats(self) -> dict[str, Any]:
        from pipeline.reid.policy import embedding_stats

        return embedding_stats(self.eligible, self.embedded,
                               self.deferred if self.budget else None)


class RayCameras:
    """The cameras' work on Ray actors, behind ``InProcessCameras``' three methods.

    Args:
        groups: The actors' driver sides.
        camera_ids: All cameras, config order (events and the end are in this order).
        timer: The run's stage timer (the actors' stage times are added at the end).
        reid: Whether re-id runs (the summary's ``reid`` counters).
        budget: Whether re-id has a crop budget (its counter is in the summary).
        describe: Summary fields of the executor (address, workers).
    """

    def __init__(self, *, groups: list[_Group], camera_ids: list[str], timer: Any,
                 reid: bool, describe: dict[str, Any], budget: bool = False) -> None:
        self.groups = groups
        self.order = {cid: i for i, cid in enumerate(camera_ids)}
        self.timer = timer
        self.embedding = _ReidCounts(budget) if reid else None
        self._describe = describe
        self._group_of = {cid: g for g in groups for cid in g.plan.camera_ids}
        self._snapshots: dict[int, list[Tracklet]] = {}
        self._finished: list[Tracklet] = []
        self._results: list[dict[str, Any]] | None = None  # of the actors' ``finish``

    def process(self, tick: list[CameraUpdate]) -> list[tuple[CameraUpdate, Tracks,
                                                              Mapping[int, np.ndarray]]]:
        """The tick's updates as ``(frame-like record, tracks, crops)``; keeps their events."""
        for update in tick:
            if update.snapshots is not None:
                self._snapshots[id(self._group_of[update.camera_id])] = update.snapshots
            self._finished += update.finished
        return [(update, update.tracks, update.crops) for update in tick]

    def _sorted(self, tracklets: list[Tracklet]) -> list[Tracklet]:
        return sorted(tracklets, key=lambda t: self.order[t.camera_id])  # stable

    def events(self, snapshot_s: float | None) -> tuple[list[Tracklet], list[Tracklet]]:
        """Tracklet events since the last call: ``(open snapshots, finished)``."""
        finished, self._finished = self._sorted(self._finished), []
        snapshots = [] if snapshot_s is None else self._sorted(
            [t for group in self._snapshots.values() for t in group])
        self._snapshots = {}
        return snapshots, finished

    def drain(self) -> list[tuple[CameraUpdate, Tracks, Mapping[int, np.ndarray]]]:
        """End of the run on every actor; returns the rows of predicted frames that
        still waited for a detection there (``detector.every``)."""
        if self._results is None:
            self._results = [group.finish() for group in self.groups]
        return read_order([(u, u.tracks, u.crops) for result in self._results
                           for u in result["drained"]], self.order)

    def finish(self) -> tuple[list[Tracklet], list[TrackKey]]:
        """End of the run on every actor: ``(tracklets not handed on, short tracks)``."""
        finished, short = list(self._finished), []
        self._finished = []
        self.drain()  # ends the actors unless ``drain`` did (the loop calls it first)
        for group, result in zip(self.groups, self._results, strict=True):
            finished += result["finished"]
            short += result["short"]
            group.info["rss_mb_end"] = result["rss_mb"]
            group.camera_fields = result["camera_fields"]
            for stage, ms in result["stage_ms"].items():
                self.timer.totals_ms[stage] += ms
            if self.embedding is not None and result["reid"] is not None:
                self.embedding.add(result["reid"])
        return self._sorted(finished), sorted(short, key=lambda key: self.order[key[0]])

    def camera_fields(self) -> dict[str, dict[str, Any]]:
        """Per camera, its worker, how often that worker was restarted and, once the run
        finished, its tracking fields as the in-process executor reports them (tracker
        thresholds and frame counts, camera-motion counters; from the last incarnation of
        a restarted worker, which carried its trackers on from the checkpoint)."""
        return {cid: {"worker": i, "restarts": g.restarts,
                      **g.camera_fields.get(cid, {})}
                for i, g in enumerate(self.groups) for cid in g.plan.camera_ids}

    def describe(self) -> dict[str, Any]:
        """The summary's ``executor`` section."""
        workers = [{"cameras": list(g.plan.camera_ids), "node": g.info.get("node"),
                    "pid": g.info.get("pid"), "package": g.info.get("package"),
                    "rss_mb_start": g.info.get("rss_mb"),
                    "rss_mb_end": g.info.get("rss_mb_end"), "restarts": g.restarts,
                    "update_bytes": g.update_bytes, "checkpoint_bytes": g.checkpoint_bytes}
                   for g in self.groups]
        return {**self._describe, "workers": workers}


def _connect(ctx: ExecutorContext, count: int) -> tuple[Any, str, list[Any]]:
    """Ray joined (or started) with room for ``count`` workers; the run's stack kills
    the actors (the returned list, filled later) and shuts a started Ray down."""
    ex = ctx.config.executor
    address = ctx.options.ray_address or ex.address
    need = count * ex.num_cpus_per_worker
    ray, started = connect(address, num_cpus=max(float(os.cpu_count() or 1), need),
                           object_store_mb=ex.object_store_mb)
    handles: list[Any] = []

    def close() -> None:
        for handle in handles:
            ray.kill(handle, no_restart=True)
        if started:
            ray.shutdown()
    ctx.stack.callback(close)
    have = float(ray.cluster_resources().get("CPU", 0))
    if need > have:
        raise RuntimeError(f"the Ray cluster at {address} has {have:g} CPUs; {count} workers "
                           f"x executor.num_cpus_per_worker {ex.num_cpus_per_worker:g} need "
                           f"{need:g}: add nodes, or lower executor.workers or "
                           "num_cpus_per_worker")
    return ray, address, handles


def _plans(ctx: ExecutorContext, count: int) -> list[WorkerPlan]:
    """The cameras dealt round robin over ``count`` workers, with the run's settings."""
    config, options, ex = ctx.config, ctx.options, ctx.config.executor
    crash_at = options.inject_worker_crash
    plans = []
    for i in range(count):
        cameras = tuple(config.cameras[i::count])
        plans.append(WorkerPlan(
            cameras=cameras, device=ctx.device, threads=ex.threads, live=ctx.live,
            outage_reset_s=ctx.outage_reset_s,
            snapshot_s=ctx.association.snapshot_s,
            schedule=ctx.association.new_schedule(), batch_frames=ex.batch_frames,
            batch_s=ex.batch_s, checkpoint_frames=ex.checkpoint_frames,
            stream_overrides=options.stream_options, duration_s=options.duration_s,
            crash_at=crash_at if crash_at and crash_at[0] in {c.id for c in cameras}
            else None))
    return plans


def _start_workers(ray: Any, ctx: ExecutorContext, plans: list[WorkerPlan],
                   handles: list[Any]) -> list[_Group]:
    """One actor per plan, models loaded; their driver sides."""
    ex = ctx.config.executor
    run_id = uuid.uuid4().hex[:8]
    worker = ray.remote(CameraWorker)
    groups = []
    for i, plan in enumerate(plans):
        handle = worker.options(
            name=f"mtmc-{run_id}-worker{i}", num_cpus=ex.num_cpus_per_worker,
            max_restarts=ex.max_restarts, max_task_retries=0).remote(ctx.make_cameras, plan)
        handles.append(handle)
        groups.append(_Group(ray, handle, plan, in_flight=ex.in_flight,
                             max_restarts=ex.max_restarts, live=ctx.live, until_s=None))
    for group in groups:
        try:
            group.info = ray.get(group.handle.info.remote(), timeout=900)
        except Exception as error:  # creation failed (bad path on a node, ...) or timeout
            raise RuntimeError(f"the Ray worker of camera(s) {', '.join(group.plan.camera_ids)} "
                               f"did not start: {_cause(error)}") from None
        group.restarts += int(group.info["reconstructed"])  # died while loading
    return groups


def _begin(ray: Any, ctx: ExecutorContext, groups: list[_Group]) -> dict[str, float]:
    """Start every actor's loop: live cameras open now with the run's clock origin;
    recordings are limited to the run's ticks. Returns each camera's fps."""
    wall_epoch = time.time()
    if ctx.live:
        for group in groups:
            group.wall_epoch_s = wall_epoch
        ray.get([group.start() for group in groups])
        for group in groups:
            group.info = {**group.info, **ray.get(group.handle.info.remote())}
    fps = {cid: g.info["cameras"][cid]["fps"] for g in groups for cid in g.info["cameras"]}
    if not ctx.live:
        if ctx.options.max_frames is not None:
            period = min(1.0 / f for f in fps.values())  # ticks follow the fastest camera
            until = (ctx.options.max_frames - 1) * period + period / 2 + _EPS_S
            for group in groups:
                group.until_s = until
        ray.get([group.start() for group in groups])
    return fps


def on_ray(ctx: ExecutorContext) -> Placement:
    """The Ray executor for ``pipeline.assembly.build_run``: actors, proxies, ticks.

    Returns:
        The ``Placement`` as ``executor.in_process`` gives it; its sources are proxies
        (``camera_id``, ``fps``, ``frame_count``).

    Raises:
        RuntimeError: Ray missing, a bad address, too few CPUs in the cluster, a worker
            that cannot start (one line each).
    """
    from pipeline.sources import CameraSet

    config, options, ex = ctx.config, ctx.options, ctx.config.executor
    ids = [c.id for c in config.cameras]
    count = min(ex.workers or len(ids), len(ids))
    ray, address, handles = _connect(ctx, count)
    groups = _start_workers(ray, ctx, _plans(ctx, count), handles)
    # The run's clock starts once the models are loaded (as in process).
    epoch = time.monotonic()
    fps = _begin(ray, ctx, groups)
    proxies = [_RemoteCamera(g, cid, fps[cid], g.info["cameras"][cid]["frame_count"])
               for g in groups for cid in g.plan.camera_ids]
    proxies.sort(key=lambda p: ids.index(p.camera_id))
    if ctx.live:
        camera_set: Any = _LiveRemoteSet(proxies, groups, stop=ctx.stop,
                                         duration_s=options.duration_s,
                                         max_ticks=options.max_frames, start_s=epoch)
    else:
        camera_set = CameraSet(sources=proxies, max_frames=options.max_frames)
    cameras = RayCameras(groups=groups, camera_ids=ids, timer=ctx.timer,
                         reid=config.reid.enabled,
                         budget=config.reid.max_crops_per_frame is not None,
                         describe={"name": "ray", "address": address,
                                   "nodes": len(ray.nodes()), "in_flight": ex.in_flight,
                                   "batch_frames": ex.batch_frames,
                                   "checkpoint_frames": ex.checkpoint_frames})
    logger.info("Ray: %d camera workers on %d node(s) (%s)", count, len(ray.nodes()), address)
    return Placement(cameras=cameras, sources=proxies, camera_set=camera_set,
                     wall_start=time.perf_counter())
