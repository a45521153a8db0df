"""The detector description: TrackML's file when there is one, else derived from ACTS's geometry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, need_acts
from scipy.spatial import cKDTree

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.events import detector, list_events, read_event
from trackflow.events.detector import (
    DETECTOR_COLUMNS,
    MODULE_KEY,
    ROTATION_COLUMNS,
    ModuleFrames,
    load_detectors,
    resolve_detectors,
)

BARREL_VOLUMES = (8, 13, 17)
CENTRE = ["cx", "cy", "cz"]
ROTATION = list(ROTATION_COLUMNS)
SHAPE = ["module_t", "module_minhu", "module_maxhu", "module_hv", "pitch_u", "pitch_v"]
LAYER = ["volume_id", "layer_id"]


def module_ids(table: pd.DataFrame) -> dict[tuple[int, int], tuple[int, ...]]:
    """The module numbers of each (volume, layer), sorted."""
    return table.groupby(LAYER)["module_id"].agg(lambda ids: tuple(sorted(ids))).to_dict()


@pytest.fixture
def acts_installed() -> None:
    need_acts()


@pytest.fixture
def bare_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """As on a fresh machine: an empty shared data directory, an empty cache, nothing configured.

    Returns the cache directory.
    """
    empty = tmp_path / "no-shared-data"
    empty.mkdir()
    monkeypatch.setenv("TRACKFLOW_SHARED_DATA", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DASK_TRACKFLOW__DATA__DETECTORS", raising=False)
    with config.set(**{"data.detectors": None}):
        yield tmp_path / "cache" / "trackflow"


@pytest.fixture(scope="module")
def derived() -> pd.DataFrame:
    need_acts()
    return detector.derive_detectors()


@pytest.mark.sim
def test_derived_table_matches_trackml_detectors(derived: pd.DataFrame, detectors_csv: Path) -> None:
    trackml = load_detectors(detectors_csv)
    assert list(derived.columns) == list(DETECTOR_COLUMNS)
    assert not derived.duplicated(list(MODULE_KEY)).any()
    # the same layers, with the same number of modules each (18,728 in all)
    assert len(derived) == len(trackml) == 18_728
    pd.testing.assert_series_equal(derived.groupby(LAYER).size(), trackml.groupby(LAYER).size())
    # and the same module numbers in each layer; the numbering itself differs in the endcaps
    assert module_ids(derived) == module_ids(trackml)

    # barrels: the same module under the same id, to the file's six significant digits
    barrel = derived[derived["volume_id"].isin(BARREL_VOLUMES)].reset_index(drop=True)
    trackml_barrel = trackml[trackml["volume_id"].isin(BARREL_VOLUMES)].reset_index(drop=True)
    assert np.array_equal(barrel[list(MODULE_KEY)], trackml_barrel[list(MODULE_KEY)])
    np.testing.assert_allclose(barrel[CENTRE], trackml_barrel[CENTRE], atol=0.01)
    np.testing.assert_allclose(barrel[ROTATION], trackml_barrel[ROTATION], atol=1e-5)
    np.testing.assert_allclose(barrel[SHAPE], trackml_barrel[SHAPE], rtol=1e-9)

    # endcaps: every module has one TrackML module at its centre, of the same shape and frame
    for (volume, layer), modules in derived[~derived["volume_id"].isin(BARREL_VOLUMES)].groupby(LAYER):
        theirs = trackml[(trackml["volume_id"] == volume) & (trackml["layer_id"] == layer)]
        distance, nearest = cKDTree(theirs[CENTRE]).query(modules[CENTRE])
        assert distance.max() < 0.01, (volume, layer)
        assert len(np.unique(nearest)) == len(modules), (volume, layer)
        matched = theirs.iloc[nearest]
        np.testing.assert_allclose(modules[ROTATION], matched[ROTATION], atol=1e-5)
        np.testing.assert_allclose(modules[SHAPE], matched[SHAPE], rtol=1e-9)


@pytest.mark.sim
def test_derived_table_is_written_once_into_the_cache(
    bare_clone: Path, acts_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = resolve_detectors()
    assert path.parent == bare_clone and path.name.endswith(".csv.gz")
    assert path.is_file() and not list(bare_clone.glob(".*.tmp"))  # no temporary file left
    frames = ModuleFrames.from_detectors(load_detectors())  # what the simulation reads
    assert len(frames) == 18_728

    def derive_again() -> pd.DataFrame:
        raise AssertionError("derived again although the cache holds the table")

    monkeypatch.setattr(detector, "derive_detectors", derive_again)
    assert resolve_detectors() == path


def test_a_configured_or_shared_description_wins(bare_clone: Path, tmp_path: Path) -> None:
    # a configured file is used as it is: when it is missing, that is the error, nothing is derived
    missing = tmp_path / "nowhere" / "detectors.csv.gz"
    with config.set(**{"data.detectors": str(missing)}):
        assert resolve_detectors() == missing.resolve()
        with pytest.raises(ConfigError, match=re.escape(f"{missing}: detector description not found")):
            load_detectors()
    explicit = tmp_path / "mine.csv.gz"
    assert resolve_detectors(explicit) == explicit.resolve()
    assert not bare_clone.exists()


def test_the_shared_file_wins_over_deriving(
    detectors_csv: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRACKFLOW_SHARED_DATA", str(detectors_csv.parents[1]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with config.set(**{"data.detectors": None}):
        assert resolve_detectors() == detectors_csv.resolve()
    assert not (tmp_path / "cache").exists()


def trackflow_simulate(*args: object) -> subprocess.CompletedProcess[str]:
    """Run ``trackflow simulate ARGS --no-progress`` (the installed entry point) in this environment."""
    entry = Path(sys.executable).with_name("trackflow")
    command = [str(entry)] if entry.is_file() else [sys.executable, "-m", "trackflow"]
    return subprocess.run(
        [*command, "simulate", *map(str, args), "--no-progress"],
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.sim
def test_simulate_runs_without_shared_data(bare_clone: Path, acts_installed: None, tmp_path: Path) -> None:
    """`trackflow simulate` on a fresh machine: no ../shared, nothing configured, an empty cache."""
    out = tmp_path / "events"
    result = trackflow_simulate("--out", out, "--events", 1, "--pileup", 2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote 1 events" in result.stdout
    # the same command again is refused in one line (its events are there), unless --overwrite
    again = trackflow_simulate("--out", out, "--events", 1, "--pileup", 2)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"trackflow: error: {out}: already holds event id(s) 0; choose other ids with --first-event, "
        "or replace them with --overwrite"
    )
    assert trackflow_simulate("--out", out, "--events", 1, "--pileup", 2, "--overwrite").returncode == 0
    (ref,) = list_events(out)
    event = read_event(ref)
    assert event.truth is not None and event.n_hits > 20
    # every hit, noise included, names a module of the derived table, and lies on it
    assert [p.name for p in bare_clone.iterdir()] == [resolve_detectors().name]  # written there, once
    frames = ModuleFrames.from_detectors(load_detectors())
    hits = event.hits
    rows = frames.rows(hits["volume_id"], hits["layer_id"], hits["module_id"])
    assert (rows >= 0).all()
    local = frames.to_local(hits[["x", "y", "z"]].to_numpy(np.float64), rows)
    assert frames.contains(local, rows, tolerance=0.01).all()
