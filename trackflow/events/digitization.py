"""Digitization configurations for ACTS (JSON), generated from the detector description.

pyacts ships no digitization configuration, so the project writes its own:

- ``smeared``: Gaussian smearing of the true local position with sigma = pitch / sqrt(12) per axis
  (pixel 0.05 x 0.05 mm, short strip 0.08 x 1.2 mm, long strip 0.12 x 10.8 mm); one hit per
  crossing, no cells.
- ``geometric``: the module is divided into cells (``bins = extent / pitch`` per axis, from
  ``detectors.csv``); the crossing path is projected onto the cells, which makes cells and a
  cluster-centroid hit. In pyacts 48.1.0 ACTS's own configurator comes out with ``bins = 1``, so
  the bins are computed here, one entry per sensitive module.

The module frames of ACTS's Generic Detector are those of ``detectors.csv`` (local x = u,
local y = v), so channels computed here and by ACTS agree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trackflow.events.detector import ModuleFrames
from trackflow.events.event import LONG_STRIP_VOLUMES, PIXEL_VOLUMES, SHORT_STRIP_VOLUMES

Digitization = Literal["smeared", "geometric"]
DIGITIZATIONS: tuple[str, ...] = ("smeared", "geometric")

#: readout pitch (u, v) in mm per volume for smearing
PITCH_MM: dict[int, tuple[float, float]] = {
    **dict.fromkeys(PIXEL_VOLUMES, (0.05, 0.05)),
    **dict.fromkeys(SHORT_STRIP_VOLUMES, (0.08, 1.2)),
    **dict.fromkeys(LONG_STRIP_VOLUMES, (0.12, 10.8)),
}

_HEADER = {"format-version": 0, "value-identifier": "digitization-configuration"}


def _gauss(index: int, sigma: float) -> dict[str, Any]:
    return {"index": index, "mean": 0.0, "stddev": sigma, "type": "Gauss"}


def smearing_config(pitch_mm: dict[int, tuple[float, float]] | None = None) -> dict[str, Any]:
    """ACTS digitization JSON: Gaussian smearing, sigma = pitch/sqrt(12) (mm) per volume and axis."""
    pitch_mm = pitch_mm or PITCH_MM
    entries = [
        {
            "volume": volume,
            "value": {"smearing": [_gauss(0, pu / math.sqrt(12.0)), _gauss(1, pv / math.sqrt(12.0))]},
        }
        for volume, (pu, pv) in sorted(pitch_mm.items())
    ]
    return {"acts-geometry-hierarchy-map": _HEADER, "entries": entries}


def cell_bins(frames: ModuleFrames) -> tuple[np.ndarray, np.ndarray]:
    """Number of cells along u and v per module: extent / pitch, rounded (at least 1)."""
    bins_u = np.maximum(1, np.rint(2.0 * np.maximum(frames.half_u_min, frames.half_u_max) / frames.pitch_u))
    bins_v = np.maximum(1, np.rint(2.0 * frames.half_v / frames.pitch_v))
    return bins_u.astype(np.int64), bins_v.astype(np.int64)


def geometric_config(frames: ModuleFrames, acts_sensitive: np.ndarray) -> dict[str, Any]:
    """ACTS digitization JSON with cells, one entry per sensitive module.

    ``acts_sensitive[i]`` is the ACTS sensitive-surface number of module row ``i`` of ``frames``
    (it differs from TrackML's module_id in the endcaps).
    """
    bins_u, bins_v = cell_bins(frames)
    entries = []
    for row, (volume, layer, _module) in enumerate(frames.keys):
        half_u = float(max(frames.half_u_min[row], frames.half_u_max[row]))
        half_v = float(frames.half_v[row])
        entries.append(
            {
                "volume": int(volume),
                "layer": int(layer),
                "sensitive": int(acts_sensitive[row]),
                "value": {
                    "geometric": {
                        "digital": False,
                        "indices": [0, 1],
                        "segmentation": {
                            "binningdata": [
                                _binning("binX", int(bins_u[row]), half_u),
                                _binning("binY", int(bins_v[row]), half_v),
                            ]
                        },
                        "thickness": float(frames.thickness[row]),
                        "threshold": 0.0,
                        "charge-smearing": {"mean": 0.0, "stddev": 0.01, "type": "Gauss"},
                    }
                },
            }
        )
    return {"acts-geometry-hierarchy-map": _HEADER, "entries": entries}


def _binning(axis: str, bins: int, half: float) -> dict[str, Any]:
    return {"bins": bins, "min": -half, "max": half, "option": "open", "type": "equidistant", "value": axis}


def write_config(config: dict[str, Any], path: Path) -> Path:
    """Write a digitization configuration as JSON (what ACTS's reader expects)."""
    path.write_text(json.dumps(config))
    return path
