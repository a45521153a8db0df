"""Figures on the Agg canvas, shared by every room that draws (matplotlib, no display needed).

Figures are :class:`matplotlib.figure.Figure` objects drawn on the Agg canvas, never pyplot's: no
backend is chosen or forced for the process (a notebook's inline figures stay as they are) and a
batch node without a display draws the same files. Every PNG is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trackflow.files import atomic_path


def new_figure(figsize: tuple[float, float], ncols: int = 1) -> tuple[Figure, Any]:
    """A figure on the Agg canvas (``figsize`` in inches) and its axes (one, or ``ncols``)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` (folders made, atomically); returns the path."""
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # a reader never sees half a PNG
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def plot_stage_breakdown(
    stage_seconds: dict[str, dict[str, float]], path: Path, title: str = "Per-stage breakdown"
) -> Path:
    """Stacked bars: seconds per event in each pipeline stage, one bar per label (a configuration
    of a bench, or the mean / median / slowest event of a run)."""
    fig, ax = new_figure((7, 4))
    labels = list(stage_seconds)
    stages: list[str] = []
    for per_stage in stage_seconds.values():
        stages.extend(s for s in per_stage if s not in stages)
    bottom = np.zeros(len(labels))
    for stage in stages:
        values = np.array([stage_seconds[label].get(stage, 0.0) for label in labels])
        ax.bar(labels, values, bottom=bottom, label=stage)
        bottom += values
    ax.set_ylabel("time per event (s)")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)
