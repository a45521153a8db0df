"""The pictures of ``trackflow stream`` (from the stream.json content): latency against offered
rate with the prediction (the knee), the backlog against time, and the concurrency sweep."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from trackflow.figures import new_figure, save_figure

QUANTILES = (("p50", "o", "-"), ("p95", "s", "--"), ("p99", "^", ":"))


def plot_knee(stream: dict[str, Any], path: Path) -> Path:
    """Measured p50/p95/p99 latency (markers) and the prediction (lines) against offered rate."""
    fig, ax = new_figure((6.5, 4.2))
    rates = stream["rates"]
    offered = [r["offered_rate_hz"] for r in rates]
    for (q, marker, style), colour in zip(QUANTILES, ("C0", "C1", "C2"), strict=True):
        measured = [r["latency_s"][q] if r["latency_s"][q] is not None else math.nan for r in rates]
        ax.plot(offered, measured, marker=marker, linestyle="none", color=colour, label=f"measured {q}")
        curve = stream["prediction"]["curve"]
        predicted = [c[q] for c in curve]
        ax.plot([c["rate_hz"] for c in curve], predicted, style, color=colour, label=f"predicted {q}")
    capacity = stream["capacity"]
    ax.axvline(capacity["measured_hz"], color="grey", label=f"capacity {capacity['measured_hz']:.3g} Hz")
    for key, style in (("measured_hz", "-."), ("predicted_hz", ":")):
        knee = stream["knee"].get(key)
        if knee:
            ax.axvline(knee, color="k", linestyle=style, alpha=0.6, label=f"knee {key[:-3]} {knee:.3g} Hz")
    ax.set(
        xlabel="offered rate (Hz)",
        ylabel="latency arrival -> tracks (s)",
        yscale="log",
        title=f"Latency against rate ({stream['prediction']['model']['source']} prediction)",
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def plot_backlog(stream: dict[str, Any], path: Path) -> Path:
    """Events waiting + on the cluster against time, one line per offered rate."""
    fig, ax = new_figure((6.5, 4.0))
    for rate in stream["rates"]:
        backlog = rate["backlog"]
        total = np.asarray(backlog["queued"]) + np.asarray(backlog["in_flight"])
        label = f"{rate['offered_rate_hz']:g} Hz" + (f" ({rate['shed']} shed)" if rate["shed"] else "")
        ax.plot(backlog["t_s"], total, label=label)
    ax.set(xlabel="time since the first arrival (s)", ylabel="events in the service", title="Backlog")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_concurrency(stream: dict[str, Any], path: Path) -> Path:
    """Throughput and p95 latency against requests in flight, one line per worker count."""
    fig, (left, right) = new_figure((9, 3.8), ncols=2)
    by_instances: dict[int, list[dict[str, Any]]] = {}
    for point in stream["concurrency_sweep"]:
        by_instances.setdefault(point["instances"], []).append(point)
    for instances, points in sorted(by_instances.items()):
        k = [p["concurrency"] for p in points]
        left.plot(k, [p["throughput_hz"] for p in points], marker="o", label=f"{instances} worker(s)")
        p95 = [p["latency_s"]["p95"] if p["latency_s"]["p95"] is not None else math.nan for p in points]
        right.plot(k, p95, marker="o", label=f"{instances} worker(s)")
    left.set(xlabel="requests in flight", ylabel="throughput (events/s)", title="Throughput")
    right.set(xlabel="requests in flight", ylabel="p95 latency (s)", title="p95 latency")
    for ax in (left, right):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def write_plots(stream: dict[str, Any], out_dir: Path) -> list[Path]:
    """The PNGs that apply: latency_vs_rate.png and backlog.png with rates, concurrency.png with a
    sweep."""
    out_dir = Path(out_dir)
    paths = []
    if stream["rates"]:
        paths.append(plot_knee(stream, out_dir / "latency_vs_rate.png"))
        paths.append(plot_backlog(stream, out_dir / "backlog.png"))
    if stream["concurrency_sweep"]:
        paths.append(plot_concurrency(stream, out_dir / "concurrency.png"))
    return paths
