"""Validation of TrackML event files: schema per file, values, consistency across the files of
one event.

Every problem raises :class:`trackflow.errors.EventFileError` naming the file and the problem in
one line, so a batch job can report the event as failed and carry on with the others. Values are
checked, not only types (:class:`ValueChecks`): hits inside the detector envelope, positive hit
ids, modules that exist in the detector description; the reader bounds the decompressed size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trackflow import config
from trackflow.errors import EventFileError
from trackflow.events.event import VOLUME_IDS

INT, FLOAT = "int", "float"

#: required columns per part, with their kind; extra columns are kept (e.g. particle_type)
SCHEMAS: dict[str, dict[str, str]] = {
    "hits": {
        "hit_id": INT,
        "x": FLOAT,
        "y": FLOAT,
        "z": FLOAT,
        "volume_id": INT,
        "layer_id": INT,
        "module_id": INT,
    },
    "cells": {"hit_id": INT, "ch0": INT, "ch1": INT, "value": FLOAT},
    "truth": {
        "hit_id": INT,
        "particle_id": INT,
        "tx": FLOAT,
        "ty": FLOAT,
        "tz": FLOAT,
        "tpx": FLOAT,
        "tpy": FLOAT,
        "tpz": FLOAT,
        "weight": FLOAT,
    },
    "particles": {
        "particle_id": INT,
        "vx": FLOAT,
        "vy": FLOAT,
        "vz": FLOAT,
        "px": FLOAT,
        "py": FLOAT,
        "pz": FLOAT,
        "q": INT,
        "nhits": INT,
    },
}

#: dtypes after validation: positions in float32 (mm), ids in int64/int32
DTYPES: dict[str, np.dtype] = {
    "hit_id": np.dtype(np.int64),
    "particle_id": np.dtype(np.int64),
    "volume_id": np.dtype(np.int32),
    "layer_id": np.dtype(np.int32),
    "module_id": np.dtype(np.int32),
    "ch0": np.dtype(np.int32),
    "ch1": np.dtype(np.int32),
    "q": np.dtype(np.int32),
    "nhits": np.dtype(np.int32),
    "weight": np.dtype(np.float64),
}


@dataclass(frozen=True)
class ValueChecks:
    """What the values of an event file must satisfy (settings ``events.*`` in trackflow.yaml).

    ``z_max``, ``r_max`` (mm): the detector envelope; a hit with ``|z| > z_max`` or
    ``sqrt(x² + y²) > r_max`` fails its event (default 3100 mm and 1100 mm: TrackML's outermost
    modules are at |z| = 2955.5 mm and r = 1025.3 mm). ``max_file_bytes``: the most bytes one CSV
    may hold once decompressed (default 256 MiB), so a gzip bomb is refused before it is parsed.
    ``check_modules``: (volume_id, layer_id, module_id) must be a module of the detector
    description, when one is available (:func:`trackflow.events.detector.available_detectors_path`).
    A field not given is the setting's value now.
    """

    z_max: float = field(default_factory=lambda: float(config.get("events.z_max")))
    r_max: float = field(default_factory=lambda: float(config.get("events.r_max")))
    max_file_bytes: int = field(default_factory=lambda: int(config.get("events.max_file_bytes")))
    check_modules: bool = field(default_factory=lambda: bool(config.get("events.check_modules")))

    def __post_init__(self) -> None:
        if not (self.z_max > 0 and self.r_max > 0 and self.max_file_bytes > 0):
            raise ValueError(f"{self}: z_max, r_max and max_file_bytes must be > 0")

    @classmethod
    def from_config(cls) -> ValueChecks:
        """The checks as ``dask.config`` has them now (``trackflow.events.*``)."""
        return cls()


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 2  # +1 for the header line, +1 for 1-based lines


def check_frame(
    path: Path, part: str, frame: pd.DataFrame, checks: ValueChecks | None = None
) -> pd.DataFrame:
    """Check one file's columns and values; return the frame with canonical dtypes.

    Raises EventFileError on: missing columns, non-numeric values, NaN, inf, non-integral ids,
    an empty hits file, duplicate or non-positive hit_ids (hits, truth), and for hits the value
    checks of ``checks`` (default :meth:`ValueChecks.from_config`): outside the envelope, unknown
    module.
    """
    checks = checks if checks is not None else ValueChecks.from_config()
    schema = SCHEMAS[part]
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise EventFileError(
            path, f"missing column(s) {', '.join(missing)} (have: {', '.join(map(str, frame.columns))})"
        )
    out = {}
    positions: dict[str, np.ndarray] = {}  # x, y, z of hits as read, in float64 (mm)
    for column, kind in schema.items():
        values = frame[column]
        if pd.api.types.is_bool_dtype(values):
            raise EventFileError(
                path, f"column {column} has a non-numeric value {values.iloc[0]!r} on line 2"
            )
        if not pd.api.types.is_numeric_dtype(values):
            numeric = pd.to_numeric(values, errors="coerce")
            bad = (numeric.isna() & values.notna()).to_numpy()
            if bad.any():
                line = _first_bad_row(bad)
                raise EventFileError(
                    path, f"column {column} has a non-numeric value {values.iloc[line - 2]!r} on line {line}"
                )
            # no value at all (a header-only file) or only blanks: numeric, checked below
            values = numeric.astype(np.float64)
        array = values.to_numpy()
        if np.issubdtype(array.dtype, np.floating):
            nan = np.isnan(array)
            if nan.any():
                raise EventFileError(
                    path, f"column {column} has a missing/NaN value on line {_first_bad_row(nan)}"
                )
            inf = np.isinf(array)
            if inf.any():
                raise EventFileError(
                    path, f"column {column} has an infinite value on line {_first_bad_row(inf)}"
                )
            if kind == FLOAT and DTYPES.get(column, np.dtype(np.float32)) == np.float32:
                beyond = np.abs(array) > np.finfo(np.float32).max  # would turn into inf
                if beyond.any():
                    raise EventFileError(
                        path,
                        f"column {column} has a value {array[beyond][0]:.6g} beyond float32's range "
                        f"on line {_first_bad_row(beyond)}",
                    )
        if kind == INT and np.issubdtype(array.dtype, np.floating):
            fractional = array != np.round(array)
            if fractional.any():
                raise EventFileError(
                    path,
                    f"column {column} must hold integers, has {array[fractional][0]} "
                    f"on line {_first_bad_row(fractional)}",
                )
        dtype = DTYPES.get(column, np.dtype(np.float32) if kind == FLOAT else np.dtype(np.int64))
        if part == "hits" and column in ("x", "y", "z"):
            positions[column] = np.asarray(array, np.float64)
        out[column] = array.astype(dtype, copy=False)
    for column in frame.columns:
        if column not in schema:
            out[column] = frame[column].to_numpy()
    checked = pd.DataFrame(out)
    if part == "hits":
        if checked.empty:
            raise EventFileError(path, "event is empty: no hits")
        unknown = ~checked["volume_id"].isin(VOLUME_IDS).to_numpy()
        if unknown.any():
            raise EventFileError(
                path,
                f"unknown volume_id {int(checked['volume_id'].to_numpy()[unknown][0])} on line "
                f"{_first_bad_row(unknown)} (TrackML volumes are {', '.join(map(str, VOLUME_IDS))})",
            )
        _check_envelope(path, positions, checks)
        if checks.check_modules:
            _check_modules(path, checked)
    if part in ("hits", "truth"):
        ids = checked["hit_id"].to_numpy()
        not_positive = ids <= 0
        if not_positive.any():
            raise EventFileError(
                path,
                f"hit_id must be positive, has {int(ids[not_positive][0])} on line "
                f"{_first_bad_row(not_positive)}",
            )
        dup = checked["hit_id"].duplicated().to_numpy()
        if dup.any():
            raise EventFileError(
                path,
                f"duplicate hit_id {int(checked['hit_id'].to_numpy()[dup][0])} on line {_first_bad_row(dup)}",
            )
    if part == "particles":
        dup = checked["particle_id"].duplicated().to_numpy()
        if dup.any():
            raise EventFileError(
                path,
                f"duplicate particle_id {int(checked['particle_id'].to_numpy()[dup][0])} "
                f"on line {_first_bad_row(dup)}",
            )
    return checked


def _check_envelope(path: Path, positions: dict[str, np.ndarray], checks: ValueChecks) -> None:
    """Every hit inside |z| <= z_max, r <= r_max (mm); the first one outside is named."""
    x, y, z = positions["x"], positions["y"], positions["z"]
    with np.errstate(over="ignore"):  # hypot of 1e300 is inf: outside, as it should be
        r = np.hypot(x, y)
    outside = (np.abs(z) > checks.z_max) | (r > checks.r_max)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise EventFileError(
            path,
            f"hit outside the detector envelope on line {i + 2}: x={x[i]:.6g} y={y[i]:.6g} "
            f"z={z[i]:.6g} mm (r={r[i]:.6g} mm; the envelope is |z| <= {checks.z_max:g} mm, "
            f"r <= {checks.r_max:g} mm, settings events.z_max / events.r_max)",
        )


def _check_modules(path: Path, hits: pd.DataFrame) -> None:
    """Every hit's (volume_id, layer_id, module_id) is a module of the detector description
    (skipped when none is available without deriving one)."""
    from trackflow.events.detector import available_detectors_path, module_frames

    detectors = available_detectors_path()
    if detectors is None:
        return
    rows = module_frames(detectors).rows(
        hits["volume_id"].to_numpy(), hits["layer_id"].to_numpy(), hits["module_id"].to_numpy()
    )
    unknown = rows < 0
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        volume, layer, module = (int(hits[c].to_numpy()[i]) for c in ("volume_id", "layer_id", "module_id"))
        raise EventFileError(
            path,
            f"no module volume_id={volume} layer_id={layer} module_id={module} (line {i + 2}) in the "
            f"detector description {detectors.name} ({int(unknown.sum())} hit(s) on unknown modules)",
        )


def check_consistency(
    hits: pd.DataFrame,
    truth: pd.DataFrame | None,
    particles: pd.DataFrame | None,
    paths: dict[str, Path],
) -> None:
    """Cross-file checks of one event: truth covers exactly the hits, its particles exist."""
    if truth is not None:
        truth_path = paths["truth"]
        if len(truth) != len(hits) or not np.array_equal(
            np.sort(truth["hit_id"].to_numpy()), np.sort(hits["hit_id"].to_numpy())
        ):
            extra = np.setdiff1d(truth["hit_id"].to_numpy(), hits["hit_id"].to_numpy())
            lacking = np.setdiff1d(hits["hit_id"].to_numpy(), truth["hit_id"].to_numpy())
            detail = (
                f"hit_id {int(extra[0])} is not in {paths['hits'].name}"
                if len(extra)
                else f"hit_id {int(lacking[0])} of {paths['hits'].name} has no truth row"
            )
            raise EventFileError(
                truth_path,
                f"truth hit_ids do not match the hits ({len(truth)} truth rows, {len(hits)} hits; {detail})",
            )
        if particles is not None:
            ids = truth["particle_id"].to_numpy()
            unknown = np.setdiff1d(ids[ids != 0], particles["particle_id"].to_numpy())
            if len(unknown):
                raise EventFileError(
                    truth_path,
                    f"particle_id {int(unknown[0])} is not in {paths['particles'].name} "
                    f"({len(unknown)} particle ids missing)",
                )
