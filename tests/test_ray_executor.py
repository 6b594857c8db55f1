"""The Ray executor on a real local Ray cluster (``pipeline.ray_executor``).

One run of the golden sample case (four cameras, 40 ticks, fp32) with ``executor: ray``
on a Ray cluster the run starts on this machine, with two worker processes (cameras
cam1+cam3 and cam2+cam4), in which the worker of cam2/cam4 crashes its own process
(``os._exit``) at cam2's frame 25. Ray restarts it, the driver hands it the checkpoint
of frame 16 and the run completes. The outputs must equal the single-process run of
the same config (``tests/golden/sample_offline``, which ``tests/test_golden.py`` checks
against a fresh single-process run) up to the numbering of the global ids, the rows
written before the crash must be intact, and the summary must count the restart.

The error paths (bad address, Ray missing) run the command line in a subprocess.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.golden_runs import CASES, GOLDEN, _merge, compare_text_tables

ray = pytest.importorskip("ray")

CASE = "sample_offline"
CRASH = ("cam2", 25)


def _config(executor: dict):
    from pipeline.config import config_from_dict

    case = CASES[CASE]
    path = REPO / case.config
    data = _merge(yaml.safe_load(path.read_text()), case.overrides)
    data["executor"] = executor
    return config_from_dict(data, base_dir=path.parent, where=f"{case.config} (ray test)")


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory):
    """The Ray run with one worker crash; yields (output folder, summary)."""
    from pipeline.runner import RunOptions, run

    out = tmp_path_factory.mktemp("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        summary = run(_config({"name": "ray", "address": "local", "workers": 2,
                               "checkpoint_frames": 16, "batch_frames": 8}),
                      out, RunOptions(max_frames=CASES[CASE].max_frames, progress=False,
                                      handle_signals=False, inject_worker_crash=CRASH))
    finally:
        if ray.is_initialized():  # run() shuts down the Ray it started; be sure
            ray.shutdown()
    yield out, summary


def _relabelled(path: Path) -> list[list[str]]:
    """CSV rows with global ids renumbered by first appearance (canonical labels)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    column = rows[0].index("global_id")
    labels: dict[str, str] = {}
    out = [rows[0]]
    for row in rows[1:]:
        gid = row[column]
        if gid != "-1":
            gid = labels.setdefault(gid, str(len(labels) + 1))
        out.append(row[:column] + [gid] + row[column + 1:])
    return out


def test_same_identities_and_trajectories_as_single_process(crashed_run):
    out, summary = crashed_run
    golden = GOLDEN / CASE
    got, want = _relabelled(out / "trajectories.csv"), _relabelled(golden / "trajectories.csv")
    assert len(got) == len(want) > 100
    assert got == want
    for name in sorted(p.name for p in (golden / "mot").iterdir()):
        assert not compare_text_tables(out / "mot" / name, golden / "mot" / name), name
    stored = json.loads((golden / "summary.json").read_text())
    for key in ("camera_frames", "ticks", "tracklets", "identities",
                "identities_multi_camera", "identities_short_tracks", "rows"):
        assert summary[key] == stored[key], key
    assert {k: summary["reid"][k] for k in stored["reid"]} == stored["reid"]


def test_detection_interval_gives_the_same_rows_on_ray(tmp_path):
    """``detector.every: 2`` on Ray (two workers, a checkpoint mid-run): the rows of
    predicted frames wait for the next detection in the worker (interpolated), those
    still waiting at the end come back with the worker's ``finish``; the run has the
    single-process one's rows, ids and boxes."""
    from pipeline.runner import RunOptions, run

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    options = RunOptions(max_frames=14, progress=False, handle_signals=False)
    config = _config({"name": "inprocess"})
    config = dataclasses.replace(config, detect_every=2)
    run(config, tmp_path / "single", options)
    try:
        ray_config = dataclasses.replace(_config({
            "name": "ray", "address": "local", "workers": 2, "checkpoint_frames": 5,
            "batch_frames": 3}), detect_every=2)
        summary = run(ray_config, tmp_path / "ray", options)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    def rows(name: str) -> list[list[str]]:  # the same rows; the order of cameras
        with open(tmp_path / name / "trajectories.csv", newline="") as f:  # within a
            table = list(csv.reader(f))  # write may differ (a worker's batches)
        body = sorted(table[1:], key=lambda r: (r[0], int(r[1]), int(r[4])))
        sorted_csv = tmp_path / name / "sorted.csv"
        with open(sorted_csv, "w", newline="") as f:
            csv.writer(f).writerows([table[0], *body])
        return _relabelled(sorted_csv)

    got, want = rows("ray"), rows("single")
    assert len(got) == len(want) > 100 and got == want
    frames = {(row[0], row[1]) for row in got[1:]}
    assert {f for _, f in frames} == {str(i) for i in range(14)}  # 13: predicted, drained
    assert summary["detect_every"] == 2


def test_rows_before_the_crash_are_intact(crashed_run):
    out, _ = crashed_run

    def rows_before(path: Path) -> list[list[str]]:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            return [[r[k] for k in reader.fieldnames if k != "global_id"] for r in reader
                    if r["camera"] == CRASH[0] and int(r["frame"]) < CRASH[1]]

    streamed = rows_before(out / "tracks_local.csv")
    assert len(streamed) > 20
    assert streamed == rows_before(GOLDEN / CASE / "trajectories.csv")


def test_summary_counts_the_restart_and_workers_are_gone(crashed_run):
    _, summary = crashed_run
    restarts = {c["id"]: c["restarts"] for c in summary["cameras"]}
    assert restarts == {"cam1": 0, "cam2": 1, "cam3": 0, "cam4": 1}
    # The workers' tracking fields reach the summary as in-process runs report them,
    # restarted workers' too (their trackers and motion estimators came back from the
    # checkpoint: ``auto`` checks each camera once a second, 4 times in 40 frames).
    golden = json.loads((GOLDEN / CASE / "summary.json").read_text())
    fps = {c["id"]: c["fps"] for c in golden["cameras"]}
    for camera in summary["cameras"]:
        assert camera["tracker"]["fps"] == fps[camera["id"]]
        assert camera["tracker"]["max_lost_frames"] == round(2.0 * fps[camera["id"]])
        assert camera["motion"]["mode"] == "auto" and camera["motion"]["estimates"] >= 4
    executor = summary["executor"]
    assert executor["name"] == "ray"
    workers = executor["workers"]
    assert [w["cameras"] for w in workers] == [["cam1", "cam3"], ["cam2", "cam4"]]
    assert len({w["pid"] for w in workers}) == 2  # two worker processes
    # The workers ran this checkout's code, not another installed copy.
    assert all(w["package"] == str(REPO / "pipeline") for w in workers)
    deadline = time.monotonic() + 20
    alive = [w["pid"] for w in workers]
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.5)
    assert not alive, f"Ray worker processes left behind: {alive}"


def _kill_worker_later(rows: Path, min_rows: int, killed: list[str]) -> threading.Thread:
    """A thread that waits until the run wrote ``min_rows`` rows to ``rows``, then
    ``ray.kill``s its Ray worker (Ray may restart it: ``no_restart=False``), waits until
    ``min_rows`` more rows came from the restarted worker, and stops the run with SIGINT
    (as an operator would; also when a wait gave up). Events, not fixed times: a loaded
    machine only waits longer (each wait ends after 240 s)."""

    def written() -> int:
        try:
            return len(rows.read_text().splitlines()) - 1
        except OSError:
            return 0

    def wait_for(condition) -> bool:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.5)
        return False

    def actors() -> list[dict]:
        return [a for a in ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith("mtmc-")] if ray.is_initialized() else []

    def restarted(actor: Any) -> bool:
        try:
            return bool(ray.get(actor.info.remote(), timeout=5)["reconstructed"])
        except Exception:  # noqa: BLE001 - dead, restarting or busy: not yet
            return False

    def kill() -> None:
        if wait_for(lambda: actors() and written() >= min_rows):
            name = actors()[0]
            actor = ray.get_actor(name["name"], namespace=name["namespace"])
            ray.kill(actor, no_restart=False)
            killed.append(name["name"])
            # rows buffered before the kill still arrive: count from the restart on
            if wait_for(lambda: restarted(actor)):
                before = written()
                if wait_for(lambda: written() >= before + min_rows):
                    killed.append("rows after the restart")
        os.kill(os.getpid(), signal.SIGINT)  # the run finishes cleanly either way

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_live_rtsp_camera_on_ray_survives_a_killed_worker(tmp_path):
    """A live RTSP camera (a real server on loopback) on a Ray worker that is killed
    with ``ray.kill`` mid-run: Ray restarts it, it reconnects, the run completes with
    online ids, the restart counted, the password nowhere in the outputs."""
    from pipeline.config import config_from_dict
    from pipeline.runner import RunOptions, run
    from tests.test_live_rtsp import _server_or_skip

    server = _server_or_skip(tmp_path)
    killed: list[str] = []
    try:
        data = _merge(yaml.safe_load((REPO / "configs/sample.yaml").read_text()),
                      CASES[CASE].overrides)
        data["cameras"] = [{"id": "cam1", "source": server.url(), "fps": 10}]
        data["association"] = {"min_s": 1.0}
        data["output"] = {"mot": False, "plots": False}
        data["executor"] = {"name": "ray", "threads": 2, "checkpoint_frames": 10}
        config = config_from_dict(data, base_dir=REPO / "configs", where="live ray test")
        out = tmp_path / "live"
        killer = _kill_worker_later(out / "trajectories.csv", 10, killed)
        try:
            # Runs until the killer thread stops it (SIGINT) after the restart; the
            # duration only bounds a run whose worker never comes back.
            summary = run(config, out, RunOptions(duration_s=600, progress=False,
                                                  handle_signals=True, flush_s=0.5))
        finally:
            killer.join(timeout=1)
            if ray.is_initialized():
                ray.shutdown()
    finally:
        server.kill()
    assert killed, "the worker was never killed"
    assert killed[-1] == "rows after the restart" and summary["stopped_by"] == "SIGINT"
    assert summary["live"] and summary["association"] == "online"
    camera = summary["cameras"][0]
    assert camera["restarts"] == 1
    assert camera["health"]["frames"] > 0  # the restarted worker's reconnected stream
    with open(out / "trajectories.csv", newline="") as f:
        frames = [int(r["frame"]) for r in csv.DictReader(f)]
    assert frames and frames == sorted(frames)  # numbering goes on after the restart
    for path in out.rglob("*"):
        if path.is_file():
            assert server.password not in path.read_text(errors="ignore"), path


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _mtmc(tmp_path: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess:
    argv = ["run", str(REPO / "configs/sample.yaml"), "--out", str(tmp_path), "--max-frames",
            "2", "--no-progress", *args]
    code = f"import sys; {prelude}from pipeline.cli import main; sys.exit(main({argv!r}))"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("mtmc: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_unreachable_address_is_one_clear_error(tmp_path):
    line = _one_error_line(_mtmc(tmp_path, "--ray", "127.0.0.1:1"))
    assert "cannot reach the Ray head at 127.0.0.1:1" in line and "ray start --head" in line


def test_malformed_address_is_one_clear_error(tmp_path):
    line = _one_error_line(_mtmc(tmp_path, "--ray", "no-port-here"))
    assert "bad Ray address 'no-port-here'" in line


def test_ray_not_installed_is_one_clear_error(tmp_path):
    line = _one_error_line(_mtmc(tmp_path, "--ray", prelude="sys.modules['ray'] = None; "))
    assert "needs Ray, which is not installed" in line and "pip install" in line


def test_the_product_imports_without_ray():
    code = ("import sys; sys.modules['ray'] = None; import pipeline.cli, pipeline.runner, "
            "pipeline.ray_executor; from pipeline.runner import _executor; "
            "from pipeline.config import load_config; "
            "assert _executor(load_config('configs/sample.yaml'), "
            "__import__('pipeline.runner').runner.RunOptions()).__name__ == 'in_process'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_executor_section_is_checked():
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="executor.name must be one of inprocess, ray"):
        _config({"name": "spark"})
    with pytest.raises(ConfigError, match="unknown key.*'cpus'.*executor"):
        _config({"name": "ray", "cpus": 2})
    with pytest.raises(ConfigError, match="executor.in_flight must be >= 1"):
        _config({"name": "ray", "in_flight": 0})
