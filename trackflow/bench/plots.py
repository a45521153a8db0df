"""PNG plots of ``trackflow bench`` (matplotlib on the Agg canvas, :mod:`trackflow.figures`).

Each function takes plain numbers (as found in bench.json), writes one PNG and
returns its path, so plots can be redrawn from the JSON alone. Figures are
:class:`matplotlib.figure.Figure` objects drawn on the Agg canvas, never pyplot's: no backend is
chosen or forced for the process (a notebook's inline figures stay as they are) and a batch node
without a display draws the same files.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trackflow.figures import new_figure, plot_stage_breakdown, save_figure
from trackflow.run.executors import DASK_MODES

__all__ = [
    "plot_modes",
    "plot_service_times",
    "plot_size_scaling",
    "plot_stage_breakdown",
    "plot_throughput_vs_concurrency",
    "plot_throughput_vs_workers",
    "write_plots",
]

MODE_COLOURS = {"fused": "tab:blue", "staged": "tab:orange", "direct": "tab:green"}


def _best(points: Sequence[dict[str, Any]], key: Any) -> dict[Any, float]:
    """Highest mean throughput (events/s over repeats) per ``key(point)``."""
    grouped: dict[Any, list[float]] = defaultdict(list)
    for point in points:
        grouped[key(point)].append(point["events_per_second"])
    return {k: float(np.mean(v)) for k, v in grouped.items()}


def plot_throughput_vs_workers(sweep: Sequence[dict[str, Any]], path: Path) -> Path:
    """Events/s against workers (model instances), one line per mode and threads per worker."""
    fig, ax = new_figure((6, 4))
    lines = _best(sweep, lambda p: (p["mode"], p["threads"], p["workers"]))
    for mode, threads in sorted({(m, t) for m, t, _ in lines}):
        xs = sorted(w for m, t, w in lines if (m, t) == (mode, threads))
        ax.plot(
            xs,
            [lines[(mode, threads, w)] for w in xs],
            marker="o",
            color=MODE_COLOURS.get(mode),
            linestyle="-" if threads == 1 else "--",
            label=f"{mode}, {threads} thread(s)/worker",
        )
    ax.set_xlabel("workers (instances)")
    ax.set_ylabel("throughput (events/s)")
    ax.set_title("Throughput vs instances (best concurrency)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_throughput_vs_concurrency(sweep: Sequence[dict[str, Any]], path: Path) -> Path:
    """Events/s against batches in flight, one line per mode and worker count."""
    fig, ax = new_figure((6, 4))
    lines = _best(sweep, lambda p: (p["mode"], p["workers"], p["concurrency"]))
    for mode, workers in sorted({(m, w) for m, w, _ in lines}):
        xs = sorted(k for m, w, k in lines if (m, w) == (mode, workers))
        ax.plot(
            xs,
            [lines[(mode, workers, k)] for k in xs],
            marker="o",
            color=MODE_COLOURS.get(mode),
            linestyle="-" if workers > 1 else ":",
            label=f"{mode}, {workers} worker(s)",
        )
    ax.set_xlabel("batches in flight (concurrency)")
    ax.set_ylabel("throughput (events/s)")
    ax.set_title("Throughput vs concurrency")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_modes(sweep: Sequence[dict[str, Any]], path: Path) -> Path:
    """Fused vs staged vs direct: best throughput per mode at each worker count (bars)."""
    fig, ax = new_figure((6, 4))
    best = _best(sweep, lambda p: (p["mode"], p["workers"]))
    workers = sorted({w for _, w in best})
    modes = [m for m in ("fused", "staged", "direct") if any(k[0] == m for k in best)]
    width = 0.8 / max(len(modes), 1)
    for i, mode in enumerate(modes):
        xs = [j + i * width for j, w in enumerate(workers) if (mode, w) in best]
        ys = [best[(mode, w)] for w in workers if (mode, w) in best]
        ax.bar(xs, ys, width=width, color=MODE_COLOURS.get(mode), label=mode)
    ax.set_xticks([j + width * (len(modes) - 1) / 2 for j in range(len(workers))])
    ax.set_xticklabels([f"{w} worker(s)" for w in workers])
    ax.set_ylabel("throughput (events/s)")
    ax.set_title("Fused vs staged vs direct")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def plot_size_scaling(
    hits: Sequence[float], seconds: Sequence[float], fit: dict[str, float], path: Path
) -> Path:
    """Time per event against hits (log-log), with the fitted ``a + b·h^k``."""
    fig, ax = new_figure((6, 4))
    ax.loglog(hits, seconds, "o", alpha=0.6, label="measured")
    if len(hits):
        grid = np.geomspace(max(min(hits), 1), max(hits) * 2, 100)
        ax.loglog(
            grid,
            fit["a"] + fit["b"] * grid ** fit["k"],
            "-",
            label=f"{fit['a']:.3g} + {fit['b']:.3g}·h^{fit['k']:.2f}",
        )
    ax.set_xlabel("hits per event")
    ax.set_ylabel("time per event (s)")
    ax.set_title("Scaling of time with event size")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def plot_service_times(service_times: dict[str, dict[str, Any]], path: Path) -> Path:
    """Histograms of the per-event service time of each measured worker configuration."""
    fig, ax = new_figure((6, 4))
    for key, entry in service_times.items():
        values = np.asarray(entry.get("per_event_s", []))
        if values.size:
            ax.hist(values, bins=20, histtype="step", label=key)
    ax.set_xlabel("service time per event (s)")
    ax.set_ylabel("events")
    ax.set_title("Per-event service times")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_plots(bench: dict[str, Any], out_dir: Path) -> list[Path]:
    """The bench's PNGs: throughput vs workers and vs concurrency, modes, stages, size, service."""
    sweep = [p for p in bench["sweep"] if p["events_per_second"]]
    written = []
    dask_points = [p for p in sweep if p["mode"] in DASK_MODES]
    if dask_points:
        written.append(plot_throughput_vs_workers(dask_points, out_dir / "throughput_vs_workers.png"))
        written.append(plot_throughput_vs_concurrency(dask_points, out_dir / "throughput_vs_concurrency.png"))
    if sweep:
        written.append(plot_modes(sweep, out_dir / "modes.png"))
        by_config: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for p in sweep:
            label = f"{p['mode']} w{p['workers']} t{p['threads']}"
            for stage, seconds in (p["stages"] or {}).items():
                by_config[label][stage].append(seconds)
        means = {label: {s: statistics.fmean(v) for s, v in st.items()} for label, st in by_config.items()}
        written.append(plot_stage_breakdown(means, out_dir / "stages.png"))
    size = bench["size_scaling"]
    measured = size.get("measured") or []
    direct = bench["service_times"].get("direct/w1/t1", {})
    hits = [p["hits"] for p in measured] + list(direct.get("per_event_hits", []))
    seconds = [p["seconds"] for p in measured] + list(direct.get("per_event_s", []))
    written.append(plot_size_scaling(hits, seconds, size, out_dir / "size_scaling.png"))
    written.append(plot_service_times(bench["service_times"], out_dir / "service_times.png"))
    return written
