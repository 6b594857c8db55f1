"""Plot a soak run's memory and frame counts over time (``benchmarks.soak_rtsp`` JSON).

Usage (from the repository root):
    python3 -m benchmarks.soak_rtsp --minutes 90 --cameras 4 --reid ... > runs/soak90_shipped.json
    python3 -m benchmarks.soak_plot runs/soak90_shipped.json docs/soak90.png

Top: the ``mtmc run`` process's resident set (MB) at each sample, the warm-up the
benchmark leaves out of its growth figure shaded, server kills and restarts marked.
Bottom: per camera, frames read from the stream and frames dropped (cumulative).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def late_slope_mb_per_hour(samples: list[dict]) -> float | None:
    """Resident-set growth (MB/hour) of a line fitted to the second half of the samples
    (by time): whether memory still grows once the early, bounded growth is over."""
    import numpy as np

    if len(samples) < 4:
        return None
    t = np.array([s["t_s"] for s in samples], float)
    rss = np.array([s["rss_mb"] for s in samples], float)
    late = t >= t[-1] / 2
    return float(np.polyfit(t[late] / 3600.0, rss[late], 1)[0]) if late.sum() >= 2 else None


def plot(report: dict, out: Path) -> None:
    """Write the two-panel figure of ``report`` (a ``soak_rtsp`` JSON) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    if not samples:
        raise SystemExit("soak_plot: the report has no samples (did the run start?)")
    minutes = [s["t_s"] / 60.0 for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(minutes, [s["rss_mb"] for s in samples], lw=1.2, color="tab:blue")
    top.set_ylabel("resident set (MB)")
    window = report["rss_mb"].get("steady_window_s")
    if window:
        top.axvspan(0, window[0] / 60.0, color="0.9", label="warm-up (not in the slope)")
    for event in report["events"]:
        if event["action"] in ("kill", "start"):
            for ax in (top, bottom):
                ax.axvline(event["t_s"] / 60.0, color="tab:red" if event["action"] == "kill"
                           else "tab:green", lw=0.8, ls="--")
    slope = report["rss_mb"].get("fitted_slope_mb_per_min_after_warmup")
    late = late_slope_mb_per_hour(samples)
    top.set_title(f"{report['minutes']:.0f} min, {len(samples[-1]['cameras'])} RTSP cameras"
                  + (f"; fitted growth after warm-up {slope * 60:+.0f} MB/hour"
                     if slope is not None else "")
                  + (f", over the second half {late:+.0f}" if late is not None else ""))
    top.legend(loc="lower right", fontsize=8)
    cameras = sorted(samples[-1]["cameras"])
    for cam in cameras:
        read = [s["cameras"].get(cam, {}).get("frames", 0) for s in samples]
        dropped = [s["cameras"].get(cam, {}).get("dropped", 0) for s in samples]
        line, = bottom.plot(minutes, read, lw=1.0, label=f"{cam} read")
        bottom.plot(minutes, dropped, lw=1.0, ls=":", color=line.get_color(),
                    label=f"{cam} dropped")
    bottom.set_xlabel("minutes (red: server killed, green: started again)")
    bottom.set_ylabel("frames (cumulative)")
    bottom.legend(ncol=4, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="JSON printed by benchmarks.soak_rtsp")
    parser.add_argument("out", type=Path, help="PNG to write")
    args = parser.parse_args()
    try:
        report = json.loads(args.report.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"soak_plot: cannot read {args.report}: {error}") from error
    plot(report, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
