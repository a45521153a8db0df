"""The TrackML detector description (``detectors.csv[.gz]``): where each module is and its shape.

One row per sensitive module (18,728): ``volume_id, layer_id, module_id``; centre ``cx, cy, cz``
(mm); rotation ``rot_xu .. rot_zw`` whose columns are the module's local axes u, v, w in global
coordinates (global = R @ local + centre); thickness ``module_t`` (mm); half lengths
``module_minhu`` (half width in u at v = -hv), ``module_maxhu`` (at v = +hv), ``module_hv`` (mm;
trapezoids in the endcaps, rectangles in the barrels); and the readout pitch ``pitch_u, pitch_v``
(mm).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trackflow import config
from trackflow.errors import ConfigError, EventFileError

MODULE_KEY = ("volume_id", "layer_id", "module_id")
ROTATION_COLUMNS = (
    "rot_xu",
    "rot_xv",
    "rot_xw",
    "rot_yu",
    "rot_yv",
    "rot_yw",
    "rot_zu",
    "rot_zv",
    "rot_zw",
)
DETECTOR_COLUMNS = (
    *MODULE_KEY,
    "cx",
    "cy",
    "cz",
    *ROTATION_COLUMNS,
    "module_t",
    "module_minhu",
    "module_maxhu",
    "module_hv",
    "pitch_u",
    "pitch_v",
)


def default_detectors_path() -> Path:
    """Where ``detectors.csv.gz`` is: setting ``data.detectors``, else the shared data directory.

    The shared data directory is ``$TRACKFLOW_SHARED_DATA`` or ``../shared/data`` next to the
    repository (the same rule as the test fixtures).
    """
    configured = config.get("data.detectors", None)
    if configured:
        return Path(configured).expanduser()
    shared = os.environ.get("TRACKFLOW_SHARED_DATA")
    base = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared" / "data"
    return base / "trackml" / "detectors.csv.gz"


def load_detectors(path: str | Path | None = None) -> pd.DataFrame:
    """Read the detector description (cached per path).

    Raises ConfigError when the file is not there, EventFileError when it lacks columns or
    repeats a module.
    """
    resolved = Path(path) if path is not None else default_detectors_path()
    if not resolved.is_file():
        raise ConfigError(
            f"{resolved}: detector description not found "
            "(set data.detectors, e.g. DASK_TRACKFLOW__DATA__DETECTORS=/path/detectors.csv.gz)"
        )
    return _load_detectors(str(resolved.resolve())).copy()


@functools.lru_cache(maxsize=4)
def _load_detectors(path: str) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = [c for c in DETECTOR_COLUMNS if c not in frame.columns]
    if missing:
        raise EventFileError(path, f"missing column(s) {', '.join(missing)} in detector description")
    if frame.duplicated(list(MODULE_KEY)).any():
        raise EventFileError(path, "duplicate (volume_id, layer_id, module_id) in detector description")
    return frame.sort_values(list(MODULE_KEY), ignore_index=True)


@dataclass(frozen=True)
class ModuleFrames:
    """Module geometry as arrays, row ``i`` = module ``keys[i]`` (sorted by volume, layer, module).

    ``centre`` [M,3] mm; ``rotation`` [M,3,3] (columns = u, v, w axes in global coordinates);
    ``half_u_min``, ``half_u_max``, ``half_v``, ``thickness``, ``pitch_u``, ``pitch_v`` [M] mm.
    """

    keys: np.ndarray
    centre: np.ndarray
    rotation: np.ndarray
    half_u_min: np.ndarray
    half_u_max: np.ndarray
    half_v: np.ndarray
    thickness: np.ndarray
    pitch_u: np.ndarray
    pitch_v: np.ndarray

    @classmethod
    def from_detectors(cls, detectors: pd.DataFrame) -> ModuleFrames:
        ordered = detectors.sort_values(list(MODULE_KEY), ignore_index=True)
        return cls(
            keys=ordered[list(MODULE_KEY)].to_numpy(np.int64),
            centre=ordered[["cx", "cy", "cz"]].to_numpy(np.float64),
            rotation=ordered[list(ROTATION_COLUMNS)].to_numpy(np.float64).reshape(-1, 3, 3),
            half_u_min=ordered["module_minhu"].to_numpy(np.float64),
            half_u_max=ordered["module_maxhu"].to_numpy(np.float64),
            half_v=ordered["module_hv"].to_numpy(np.float64),
            thickness=ordered["module_t"].to_numpy(np.float64),
            pitch_u=ordered["pitch_u"].to_numpy(np.float64),
            pitch_v=ordered["pitch_v"].to_numpy(np.float64),
        )

    def __len__(self) -> int:
        return len(self.keys)

    @functools.cached_property
    def _code(self) -> np.ndarray:
        return _module_code(self.keys[:, 0], self.keys[:, 1], self.keys[:, 2])

    def rows(self, volume_id: np.ndarray, layer_id: np.ndarray, module_id: np.ndarray) -> np.ndarray:
        """Row index of each (volume, layer, module); -1 where the module does not exist."""
        code = _module_code(np.asarray(volume_id), np.asarray(layer_id), np.asarray(module_id))
        index = np.searchsorted(self._code, code)
        index = np.clip(index, 0, len(self._code) - 1)
        return np.where(self._code[index] == code, index, -1)

    def area(self) -> np.ndarray:
        """Sensitive area of each module (mm²)."""
        return (self.half_u_min + self.half_u_max) * 2.0 * self.half_v

    def to_local(self, points: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Global points [N,3] (mm) into the frames of modules ``rows`` -> local (u, v, w) [N,3]."""
        offset = np.asarray(points, np.float64) - self.centre[rows]
        return np.einsum("nij,ni->nj", self.rotation[rows], offset)

    def to_global(self, local: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Local (u, v, w) [N,3] on modules ``rows`` -> global (x, y, z) [N,3] (mm)."""
        return np.einsum("nij,nj->ni", self.rotation[rows], np.asarray(local, np.float64)) + self.centre[rows]

    def half_u_at(self, v: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Half width in u (mm) of modules ``rows`` at local v (trapezoids widen from -hv to +hv)."""
        fraction = (np.asarray(v, np.float64) + self.half_v[rows]) / (2.0 * self.half_v[rows])
        return self.half_u_min[rows] + (self.half_u_max[rows] - self.half_u_min[rows]) * fraction

    def contains(self, local: np.ndarray, rows: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
        """Whether local points lie inside the modules' volume (bounds and thickness, + tolerance mm)."""
        u, v, w = np.asarray(local, np.float64).T
        return (
            (np.abs(w) <= self.thickness[rows] / 2.0 + tolerance)
            & (np.abs(v) <= self.half_v[rows] + tolerance)
            & (
                np.abs(u)
                <= self.half_u_at(np.clip(v, -self.half_v[rows], self.half_v[rows]), rows) + tolerance
            )
        )


def _module_code(volume_id: np.ndarray, layer_id: np.ndarray, module_id: np.ndarray) -> np.ndarray:
    # one sortable integer per module: volumes < 2^8, layers < 2^12, modules < 2^20 (as in ACTS ids)
    return (
        (np.asarray(volume_id, np.int64) << 32)
        | (np.asarray(layer_id, np.int64) << 20)
        | np.asarray(module_id, np.int64)
    )


@functools.lru_cache(maxsize=4)
def _module_frames(path: str) -> ModuleFrames:
    return ModuleFrames.from_detectors(_load_detectors(path))


def module_frames(path: str | Path | None = None) -> ModuleFrames:
    """The module frames of the detector description at ``path`` (default: see load_detectors)."""
    resolved = Path(path) if path is not None else default_detectors_path()
    if not resolved.is_file():
        load_detectors(resolved)  # raises the one-line ConfigError
    return _module_frames(str(resolved.resolve()))
