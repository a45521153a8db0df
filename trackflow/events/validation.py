"""Validation of TrackML event files: schema per file, consistency across the files of one event.

Every problem raises :class:`trackflow.errors.EventFileError` naming the file and the problem in
one line, so a batch job can report the event as failed and carry on with the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 2  # +1 for the header line, +1 for 1-based lines


def check_frame(path: Path, part: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Check one file's columns and values; return the frame with canonical dtypes.

    Raises EventFileError on: missing columns, non-numeric values, NaN, inf, non-integral ids,
    an empty hits file, duplicate hit_ids (hits, truth).
    """
    schema = SCHEMAS[part]
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise EventFileError(
            path, f"missing column(s) {', '.join(missing)} (have: {', '.join(map(str, frame.columns))})"
        )
    out = {}
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
        if kind == INT and np.issubdtype(array.dtype, np.floating):
            fractional = array != np.round(array)
            if fractional.any():
                raise EventFileError(
                    path,
                    f"column {column} must hold integers, has {array[fractional][0]} "
                    f"on line {_first_bad_row(fractional)}",
                )
        dtype = DTYPES.get(column, np.dtype(np.float32) if kind == FLOAT else np.dtype(np.int64))
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
    if part in ("hits", "truth"):
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
