"""The conversions on either side of the ACTS sequence of :mod:`trackflow.classical.ckf`.

- **hits -> measurements** (:func:`hit_measurements`): each hit of the event (noise included: the
  CKF does not know which hits are noise) becomes one 2-D measurement on its module. The module is
  the ACTS surface that :func:`~trackflow.events.acts_setup.acts_detector` (the one owner of
  geometry and field) matched to the TrackML ``(volume_id, layer_id, module_id)``; the local
  coordinates are the hit's position in the module frame of ``detectors.csv`` (the same frame as
  ACTS's: ``u = R[:, 0]``, ``v = R[:, 1]``), their variances ``pitch² / 12`` per axis
  (:data:`~trackflow.events.digitization.PITCH_MM`, what the smeared digitization uses).
  Measurements are sorted by surface; measurement ``i`` (the index of ACTS's ``IndexSourceLink``)
  is hit row ``order[i]``.
- **tracks -> hits** (:func:`assign_hits`): each resolved track's measurement indices give its
  hits. A hit shared by tracks goes to one of them; a hit on no track becomes a track of its own,
  as in trackflow's labelling, so the submission holds every hit exactly once.

Needs pyacts for the module map (:func:`module_map`), imported only when it is first built.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trackflow.errors import ConfigError, EventFileError
from trackflow.events.detector import resolve_detectors
from trackflow.events.digitization import PITCH_MM

if TYPE_CHECKING:
    from trackflow.events.acts_setup import ActsDetector

__all__ = ["Measurements", "ModuleMap", "assign_hits", "hit_measurements", "module_map"]


@dataclass
class Measurements:
    """An event's hits as ACTS measurements, in measurement order (sorted by surface).

    ``order[i]``: the hit row (position in ``event.hits``) of measurement ``i``; ``volume``,
    ``layer``, ``sensitive``: its ACTS surface; ``local`` [M, 2] (mm) its position in the module
    frame; ``variance`` [M, 2] (mm²) of each local coordinate.
    """

    order: np.ndarray
    volume: np.ndarray
    layer: np.ndarray
    sensitive: np.ndarray
    local: np.ndarray
    variance: np.ndarray

    def __len__(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class ModuleMap:
    """The ACTS set-up of one detectors.csv and where each of its TrackML modules is in ACTS.

    ``setup``: the geometry and field; ``codes`` int64 [M]: the sorted TrackML module codes
    (volume, layer, module) of ``setup.frames``' rows; ``sensitive`` int64 [M]: ACTS's
    sensitive-surface number of each row.
    """

    setup: ActsDetector
    codes: np.ndarray
    sensitive: np.ndarray


def module_map(detectors: Path | None = None) -> ModuleMap:
    """The module map of ``detectors`` (default: as :func:`~trackflow.events.detector.resolve_detectors`),
    built once per process (about 2 s; needs pyacts)."""
    return _module_map(str(resolve_detectors(detectors)))


@functools.lru_cache(maxsize=2)
def _module_map(detectors_path: str) -> ModuleMap:
    from trackflow.events.acts_setup import acts_detector

    setup = acts_detector(detectors_path)
    keys = setup.frames.keys
    codes = _module_code(keys[:, 0], keys[:, 1], keys[:, 2])
    if np.any(np.diff(codes) <= 0):
        raise ConfigError(f"{detectors_path}: module frames are not sorted by (volume, layer, module)")
    sensitive = np.empty(len(keys), np.int64)
    sensitive[setup.frame_rows] = setup.acts_codes & 0xFFFFF
    return ModuleMap(setup=setup, codes=codes, sensitive=sensitive)


def _module_code(volume: np.ndarray, layer: np.ndarray, module: np.ndarray) -> np.ndarray:
    """One sortable int64 per TrackML (volume_id, layer_id, module_id)."""
    code: np.ndarray = (
        (np.asarray(volume, np.int64) << 40)
        | (np.asarray(layer, np.int64) << 24)
        | np.asarray(module, np.int64)
    )
    return code


def hit_measurements(hits: pd.DataFrame, detectors: Path | None = None) -> Measurements:
    """Each hit (x, y, z mm; volume_id, layer_id, module_id) as a measurement on its ACTS surface.

    Raises EventFileError when a hit names a module that the detector does not have.
    """
    modules = module_map(detectors)
    codes, frames = modules.codes, modules.setup.frames
    volume = hits["volume_id"].to_numpy(np.int64)
    layer = hits["layer_id"].to_numpy(np.int64)
    code = _module_code(volume, layer, hits["module_id"].to_numpy(np.int64))
    row = np.clip(np.searchsorted(codes, code), 0, len(codes) - 1)
    unknown = codes[row] != code
    if unknown.any():
        first = hits.iloc[int(np.flatnonzero(unknown)[0])]
        raise EventFileError(
            "<hits>",
            f"{int(unknown.sum())} hit(s) on modules the detector lacks, e.g. hit {int(first['hit_id'])} on "
            f"({int(first['volume_id'])}, {int(first['layer_id'])}, {int(first['module_id'])})",
        )
    position = hits[["x", "y", "z"]].to_numpy(np.float64)
    # module frame: columns of the rotation are u, v, w in global coordinates
    local = np.einsum("nij,ni->nj", frames.rotation[row], position - frames.centre[row])[:, :2]
    pitch = np.array([PITCH_MM.get(v, (np.nan, np.nan)) for v in range(max(PITCH_MM) + 1)])
    variance = pitch[volume] ** 2 / 12.0
    acts_sensitive = modules.sensitive[row]
    order = np.lexsort((acts_sensitive, layer, volume))
    return Measurements(
        order=order,
        volume=volume[order],
        layer=layer[order],
        sensitive=acts_sensitive[order],
        local=local[order],
        variance=variance[order],
    )


def assign_hits(
    n_measurements: int,
    track_measurements: list[np.ndarray],
    track_measurement_counts: np.ndarray,
    track_chi2: np.ndarray,
) -> tuple[np.ndarray, int]:
    """A track label per measurement, and the number of measurements claimed by > 1 track.

    ``track_measurements[t]``: measurement indices of track ``t``. A measurement of several tracks
    goes to the one with most measurements, then the lowest chi², then the lowest index. Labels:
    ``t`` for track ``t``'s measurements; measurements of no track get labels from
    ``len(track_measurements)`` on, one each.
    """
    labels = np.full(n_measurements, -1, np.int64)
    n_tracks = len(track_measurements)
    shared = 0
    if n_tracks:
        lengths = np.array([len(m) for m in track_measurements], np.int64)
        measurement = np.concatenate([np.asarray(m, np.int64) for m in track_measurements])
        track = np.repeat(np.arange(n_tracks, dtype=np.int64), lengths)
        counts = np.asarray(track_measurement_counts, np.int64)[track]
        chi2 = np.asarray(track_chi2, np.float64)[track]
        # per measurement, the best claim first
        order = np.lexsort((track, chi2, -counts, measurement))
        measurement, track = measurement[order], track[order]
        first = np.r_[True, measurement[1:] != measurement[:-1]]
        labels[measurement[first]] = track[first]
        shared = len(np.unique(measurement[~first]))
    free = labels < 0
    labels[free] = n_tracks + np.arange(int(free.sum()), dtype=np.int64)
    return labels, shared
