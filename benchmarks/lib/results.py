"""Results files: where each headline figure lives.

A benchmark run with ``--results`` writes its figures to ``docs/results/<name>.json``
with what produced them: the command, the commit (``-dirty`` with uncommitted changes),
the machine (CPU model, cores, whether it has AVX-512 BF16) and the date. README and
docs quote figures from these files, and ``tests/test_figures.py`` fails when a quote
and its file disagree, so a figure is measured in one place and changed in one place.

A file may hold several variants of one benchmark (``variant``): each is replaced as a
whole when its benchmark runs again.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "machine", "write_results"]

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results"


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()
        # the results files themselves do not make the measured code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!docs/results"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def _command() -> str:
    """This process's command line as typed (``python3 -m benchmarks.NAME ARGS``)."""
    script = Path(sys.argv[0]).resolve() if sys.argv else Path()
    try:
        module = script.with_suffix("").relative_to(REPO).as_posix().replace("/", ".")
    except ValueError:
        return " ".join(sys.argv)
    return " ".join(["python3", "-m", module, *sys.argv[1:]])


def machine() -> dict[str, Any]:
    """CPU model, usable cores, AVX-512 BF16 or not (the figures' context)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        info = []
    names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    flags = next((line.split() for line in info if line.startswith("flags")), flags)
    return {"cpu": names[0] if names else model, "cores": len(os.sched_getaffinity(0)),
            "avx512_bf16": "avx512_bf16" in flags}


def write_results(name: str, figures: dict[str, Any], *, variant: str | None = None,
                  settings: dict[str, Any] | None = None) -> Path:
    """Write (or update one ``variant`` of) ``docs/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    entry = {"figures": figures, "command": _command(),
             "settings": settings or {}, "commit": _commit(), "machine": machine(),
             "date": datetime.date.today().isoformat()}
    if variant is None:
        data: dict[str, Any] = entry
    else:
        data = json.loads(path.read_text()) if path.is_file() else {}
        data.setdefault("variants", {})[variant] = entry
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path
