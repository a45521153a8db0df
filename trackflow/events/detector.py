"""The TrackML detector description (``detectors.csv[.gz]``): where each module is and its shape.

One row per sensitive module (18,728): ``volume_id, layer_id, module_id``; centre ``cx, cy, cz``
(mm); rotation ``rot_xu .. rot_zw`` whose columns are the module's local axes u, v, w in global
coordinates (global = R @ local + centre); thickness ``module_t`` (mm); half lengths
``module_minhu`` (half width in u at v = -hv), ``module_maxhu`` (at v = +hv), ``module_hv`` (mm;
trapezoids in the endcaps, rectangles in the barrels); and the readout pitch ``pitch_u, pitch_v``
(mm).

Where the table comes from (:func:`resolve_detectors`): a path given by the caller, else the
setting ``data.detectors``, else TrackML's own file in the shared data directory when it is
there, else a table derived from ACTS's Generic Detector (:func:`derive_detectors`), written once
into the user's cache directory. Deriving was chosen over shipping TrackML's file: the shared
copy's SOURCE.md finds no licence stated by any of the repositories it came from ("commonly
described as released under CC BY 3.0; check the Kaggle, Codalab or Zenodo terms before
redistributing"), whereas the derived table comes from pyacts (MPL-2.0), already a dependency of
the ``sim`` extra, so the repository ships no data file and no extra licence.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trackflow import config
from trackflow.errors import ConfigError, EventFileError
from trackflow.events.event import LONG_STRIP_VOLUMES, PIXEL_VOLUMES, SHORT_STRIP_VOLUMES
from trackflow.files import atomic_path

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
#: readout pitch (u, v) in mm per volume, as TrackML's detectors.csv has it: pixels 0.05 x 0.05625
#: (ACTS's Generic Detector configures 336 x 1280 readout bins on its 16.8 x 72 mm pixel modules),
#: short strips 0.08 x 1.2, long strips 0.12 x 10.8 in the barrel and 0.12 x 10.4 in the endcaps.
#: pyacts's geometry carries no readout segmentation, so the derived table takes these from here.
READOUT_PITCH_MM: dict[int, tuple[float, float]] = {
    **dict.fromkeys(PIXEL_VOLUMES, (0.05, 0.05625)),
    **dict.fromkeys(SHORT_STRIP_VOLUMES, (0.08, 1.2)),
    LONG_STRIP_VOLUMES[0]: (0.12, 10.4),
    LONG_STRIP_VOLUMES[1]: (0.12, 10.8),
    LONG_STRIP_VOLUMES[2]: (0.12, 10.4),
}
#: version of :func:`derive_detectors`'s output, part of the cache file's name: bump it when the
#: derivation changes, so no stale cache is read
DERIVED_FORMAT = 1


def default_detectors_path() -> Path:
    """Where ``detectors.csv.gz`` is: setting ``data.detectors``, else the shared data directory.

    The shared data directory is ``$TRACKFLOW_SHARED_DATA`` or ``../shared/data`` next to the
    repository (the same rule as the test fixtures). The file need not exist: see
    :func:`resolve_detectors` for what is used then.
    """
    configured = config.get("data.detectors")
    if configured:
        return Path(configured).expanduser()
    shared = os.environ.get("TRACKFLOW_SHARED_DATA")
    base = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared" / "data"
    return base / "trackml" / "detectors.csv.gz"


def resolve_detectors(path: str | Path | None = None) -> Path:
    """The detector description file to use, absolute.

    ``path`` when given, else the setting ``data.detectors`` (both used as they are: a missing
    file is an error, never silently replaced), else the shared ``detectors.csv.gz`` when it
    exists, else the table derived from ACTS's Generic Detector (:func:`derived_detectors_path`,
    built on first use; needs pyacts).
    """
    if path is not None:
        return Path(path).expanduser().resolve()
    candidate = default_detectors_path()
    if config.get("data.detectors") or candidate.is_file():
        return candidate.resolve()
    return derived_detectors_path(missing=candidate)


def available_detectors_path() -> Path | None:
    """The detector description that is there without deriving one, or None.

    As :func:`resolve_detectors`, except that the table derived from ACTS's Generic Detector is
    only used when it is already in the cache: checking an event's module ids never starts a
    derivation (about 1 s and a pyacts import per worker).
    """
    candidate = default_detectors_path()
    if config.get("data.detectors") or candidate.is_file():
        return candidate.resolve()
    try:
        version = importlib.metadata.version("pyacts")
    except importlib.metadata.PackageNotFoundError:
        return None
    derived = _derived_path(version)
    return derived if derived.is_file() else None


def _derived_path(pyacts_version: str) -> Path:
    return cache_dir() / f"generic-detector-v{DERIVED_FORMAT}-pyacts{pyacts_version}.csv.gz"


def cache_dir() -> Path:
    """trackflow's cache directory: ``$XDG_CACHE_HOME/trackflow``, default ``~/.cache/trackflow``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "trackflow"


def derived_detectors_path(missing: Path | None = None) -> Path:
    """The detector description derived from the installed pyacts, written first if absent.

    The file is ``<cache_dir>/generic-detector-v<format>-pyacts<version>.csv.gz``: it depends on
    the installed pyacts only, not on any run, so the user's cache directory holds one copy for
    every simulation, notebook and test, rather than one per output directory (where it would
    also sit among the event files). A new pyacts (or derivation) gets a new file. Written
    atomically: concurrent first uses (Dask workers) each write a complete file and rename it.
    ``missing``: the shared file looked for, named in the error when pyacts is not installed.
    """
    try:
        version = importlib.metadata.version("pyacts")
    except importlib.metadata.PackageNotFoundError as error:
        where = f"{missing} not found, and " if missing is not None else ""
        raise ConfigError(
            f"no detector description: {where}pyacts is not installed to derive one from ACTS's "
            "Generic Detector (pip install 'trackflow[sim]', or set data.detectors, e.g. "
            "DASK_TRACKFLOW__DATA__DETECTORS=/path/detectors.csv.gz)"
        ) from error
    path = _derived_path(version)
    if not path.is_file():
        table = derive_detectors()
        try:
            with atomic_path(path) as tmp:
                table.to_csv(
                    tmp, index=False, float_format="%.10g", compression={"method": "gzip", "mtime": 0}
                )
        except OSError as error:
            raise ConfigError(
                f"{path.parent}: cannot write the derived detector description ({error.strerror}); "
                "set XDG_CACHE_HOME to a writable directory, or data.detectors to a detectors.csv.gz"
            ) from error
    return path


@functools.cache
def generic_detector() -> tuple[Any, Any]:
    """ACTS's Generic Detector and its tracking geometry, built once per process (needs pyacts).

    The detector object is returned too: it owns the C++ detector elements the geometry points to.
    """
    import acts
    import acts.examples

    detector = acts.examples.GenericDetector(
        acts.examples.GenericDetector.Config(logLevel=acts.logging.WARNING)
    )
    return detector, detector.trackingGeometry()


def derive_detectors() -> pd.DataFrame:
    """The detector description, one row per sensitive surface of ACTS's Generic Detector.

    Columns as detectors.csv (:data:`DETECTOR_COLUMNS`), sorted by module key. ACTS's volume and
    layer numbers are TrackML's; ``module_id`` is ACTS's sensitive-surface number, which equals
    TrackML's in the barrels (volumes 8, 13, 17) but runs ring by ring in the endcaps, where
    TrackML's interleaves the rings in phi. Centres, rotations (local x, y = u, v), bounds and
    thicknesses are the geometry's; the pitch is :data:`READOUT_PITCH_MM`. Compared with TrackML's
    file, module for module: centres agree within 4 µm, rotations within 5e-7 (the file's six
    digits), bounds, thicknesses and pitches exactly (``tests/test_detector.py``). About 1 s.
    """
    import acts

    _detector, tracking_geometry = generic_detector()
    context = acts.GeometryContext.dangerouslyDefaultConstruct()
    rows = []
    for geo_id, surface in tracking_geometry.geoIdSurfaceMap().items():
        if geo_id.sensitive == 0:
            continue
        transform = surface.localToGlobalTransform(context)
        rotation = transform.rotation
        bounds = surface.bounds
        values = bounds.values()
        key = (geo_id.volume, geo_id.layer, geo_id.sensitive)
        centred = values[0] == -values[2] and values[1] == -values[3]
        if bounds.type == acts.SurfaceBoundsType.Rectangle and centred:
            half_u_min = half_u_max = values[2]
            half_v = values[3]
        elif bounds.type == acts.SurfaceBoundsType.Trapezoid and values[3] == 0.0:
            half_u_min, half_u_max, half_v = values[:3]
        else:  # the module frames assume centred rectangles or unrotated trapezoids
            raise RuntimeError(f"ACTS surface {key}: unexpected bounds {bounds.type} {values}")
        pitch_u, pitch_v = READOUT_PITCH_MM[geo_id.volume]
        rows.append(
            (
                *key,
                *np.asarray(transform.translation, np.float64),
                *(rotation[i, j] for i in range(3) for j in range(3)),
                # ACTS keeps thicknesses as float32 (0.15 mm reads 0.15000000596)
                round(float(surface.thickness), 6),
                half_u_min,
                half_u_max,
                half_v,
                pitch_u,
                pitch_v,
            )
        )
    table = pd.DataFrame(rows, columns=list(DETECTOR_COLUMNS))
    return table.sort_values(list(MODULE_KEY), ignore_index=True)


def load_detectors(path: str | Path | None = None) -> pd.DataFrame:
    """Read the detector description (cached per path; default: :func:`resolve_detectors`).

    Raises ConfigError when the file is not there, EventFileError when it lacks columns or
    repeats a module.
    """
    resolved = resolve_detectors(path)
    if not resolved.is_file():
        raise ConfigError(
            f"{resolved}: detector description not found "
            "(set data.detectors, e.g. DASK_TRACKFLOW__DATA__DETECTORS=/path/detectors.csv.gz)"
        )
    return _load_detectors(str(resolved)).copy()


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
        area: np.ndarray = (self.half_u_min + self.half_u_max) * 2.0 * self.half_v
        return area

    def to_local(self, points: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Global points [N,3] (mm) into the frames of modules ``rows`` -> local (u, v, w) [N,3]."""
        offset = np.asarray(points, np.float64) - self.centre[rows]
        local: np.ndarray = np.einsum("nij,ni->nj", self.rotation[rows], offset)
        return local

    def to_global(self, local: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Local (u, v, w) [N,3] on modules ``rows`` -> global (x, y, z) [N,3] (mm)."""
        rotated = np.einsum("nij,nj->ni", self.rotation[rows], np.asarray(local, np.float64))
        points: np.ndarray = rotated + self.centre[rows]
        return points

    def half_u_at(self, v: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Half width in u (mm) of modules ``rows`` at local v (trapezoids widen from -hv to +hv)."""
        fraction = (np.asarray(v, np.float64) + self.half_v[rows]) / (2.0 * self.half_v[rows])
        widening = (self.half_u_max[rows] - self.half_u_min[rows]) * fraction
        half_u: np.ndarray = self.half_u_min[rows] + widening
        return half_u

    def contains(self, local: np.ndarray, rows: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
        """Whether local points lie inside the modules' volume (bounds and thickness, + tolerance mm)."""
        u, v, w = np.asarray(local, np.float64).T
        inside: np.ndarray = (
            (np.abs(w) <= self.thickness[rows] / 2.0 + tolerance)
            & (np.abs(v) <= self.half_v[rows] + tolerance)
            & (
                np.abs(u)
                <= self.half_u_at(np.clip(v, -self.half_v[rows], self.half_v[rows]), rows) + tolerance
            )
        )
        return inside


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
    """The module frames of the detector description at ``path`` (default: :func:`resolve_detectors`)."""
    resolved = resolve_detectors(path)
    if not resolved.is_file():
        load_detectors(resolved)  # raises the one-line ConfigError
    return _module_frames(str(resolved))
