"""The estimate's picture: nodes needed against event rate (PNG beside estimate.json)."""

from __future__ import annotations

from pathlib import Path

from trackflow.figures import new_figure, save_figure


def plot_nodes_against_rate(curve: dict[str, list[float]], rate_hz: float, path: Path) -> Path:
    """Nodes needed against event rate (log-log), one line per node type; the target marked."""
    fig, ax = new_figure((6, 4))
    rates = curve.get("rate_hz", [])
    for name, nodes in curve.items():
        if name != "rate_hz":
            ax.step(rates, nodes, where="post", label=name)
    ax.axvline(rate_hz, color="grey", linestyle="--", label=f"target {rate_hz:g} Hz")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("event rate (Hz)")
    ax.set_ylabel("nodes")
    ax.set_title("Nodes needed against rate")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)
