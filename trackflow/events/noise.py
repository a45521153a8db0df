"""Noise hits: random hits on sensitive modules, belonging to no particle.

Fatras makes none, while the TrackML events have 15-20 % (about 17.5k of 100k hits). A noise hit
picks a module uniformly among all sensitive modules and a point uniformly on that module's
surface (rectangle or trapezoid), in the module's mid-plane.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackflow.errors import ConfigError
from trackflow.events.detector import ModuleFrames
from trackflow.events.digitization import cell_bins


def noise_count(n_signal: int, fraction: float) -> int:
    """Number of noise hits to add to ``n_signal`` particle hits so noise is ``fraction`` of all."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"noise_fraction: must be in [0, 1), got {fraction}")
    return round(fraction * n_signal / (1.0 - fraction))


def sample_on_modules(
    frames: ModuleFrames, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points uniform on randomly chosen modules: (module rows [N], local u, v, w [N,3])."""
    rows = rng.integers(0, len(frames), size=count)
    local = np.zeros((count, 3))
    pending = np.arange(count)
    # rejection from the bounding rectangle: trapezoids fill >= 2/3 of it, so this ends quickly
    while len(pending):
        r = rows[pending]
        half_u = np.maximum(frames.half_u_min[r], frames.half_u_max[r])
        u = rng.uniform(-1.0, 1.0, len(pending)) * half_u
        v = rng.uniform(-1.0, 1.0, len(pending)) * frames.half_v[r]
        inside = np.abs(u) <= frames.half_u_at(v, r)
        local[pending[inside], 0] = u[inside]
        local[pending[inside], 1] = v[inside]
        pending = pending[~inside]
    return rows, local


def noise_hits(frames: ModuleFrames, count: int, rng: np.random.Generator) -> pd.DataFrame:
    """``count`` noise hits: x, y, z (mm), volume_id, layer_id, module_id, and cell channels.

    ``ch0``/``ch1`` are the cell indices along u and v, counted from the module's -u and -v edges
    with the cells of the geometric digitization (:func:`cell_bins`).
    """
    rows, local = sample_on_modules(frames, count, rng)
    xyz = frames.to_global(local, rows)
    half_u = np.maximum(frames.half_u_min[rows], frames.half_u_max[rows])
    bins_u, bins_v = (b[rows] for b in cell_bins(frames))
    fraction_u = (local[:, 0] + half_u) / (2.0 * half_u)
    fraction_v = (local[:, 1] + frames.half_v[rows]) / (2.0 * frames.half_v[rows])
    keys = frames.keys[rows]
    return pd.DataFrame(
        {
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "volume_id": keys[:, 0].astype(np.int32),
            "layer_id": keys[:, 1].astype(np.int32),
            "module_id": keys[:, 2].astype(np.int32),
            "ch0": np.minimum(np.floor(fraction_u * bins_u), bins_u - 1).astype(np.int32),
            "ch1": np.minimum(np.floor(fraction_v * bins_v), bins_v - 1).astype(np.int32),
        }
    )
