"""ACTS Fatras simulation: events that the reader accepts, on the real detector, with sound truth."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import need_acts
from scipy.spatial import cKDTree

from trackflow.errors import ConfigError, EventFileError
from trackflow.events import list_events, read_event
from trackflow.events.detector import ModuleFrames, load_detectors
from trackflow.events.simulation import SimulationConfig, simulate_event, trackml_weights
from trackflow.run.parallel_simulation import simulate

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module", autouse=True)
def _acts() -> None:
    need_acts()


def small_config(detectors_csv: Path, **overrides: object) -> SimulationConfig:
    """A few hundred particles: seconds per event."""
    settings: dict[str, object] = {
        "seed": 7,
        "pileup": 5,
        "particles_per_vertex": 10,
        "pt_min": 0.3,
        "pt_max": 5.0,
        "noise_fraction": 0.15,
        "detectors": detectors_csv,
    }
    settings.update(overrides)
    return SimulationConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def simulated_dir(tmp_path_factory: pytest.TempPathFactory, detectors_csv: Path) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(small_config(detectors_csv), out, events=2, progress=False)
    return out


@pytest.fixture(scope="module")
def frames(detectors_csv: Path) -> ModuleFrames:
    return ModuleFrames.from_detectors(load_detectors(detectors_csv))


def test_two_events_pass_the_readers_validation(simulated_dir: Path) -> None:
    refs = list_events(simulated_dir)
    assert [r.event_id for r in refs] == [0, 1]
    for ref in refs:
        event = read_event(ref)  # raises EventFileError on any schema or consistency problem
        assert event.truth is not None and event.particles is not None
        assert event.cells is None  # smeared digitization makes no cells
        assert event.n_hits > 500
        assert np.array_equal(np.sort(event.hits["hit_id"].to_numpy()), np.arange(1, event.n_hits + 1))
        assert event.truth["weight"].sum() == pytest.approx(1.0, abs=1e-4)
        # the file order of hit ids gives nothing away: neighbours in id are rarely the same particle
        truth = event.truth.sort_values("hit_id")
        same = truth["particle_id"].to_numpy()[1:] == truth["particle_id"].to_numpy()[:-1]
        assert same.mean() < 0.1


def test_every_hit_lies_on_its_module(simulated_dir: Path, frames: ModuleFrames) -> None:
    for ref in list_events(simulated_dir):
        event = read_event(ref)
        hits = event.hits
        rows = frames.rows(hits["volume_id"], hits["layer_id"], hits["module_id"])
        assert (rows >= 0).all(), "a hit names a module that detectors.csv does not have"
        local = frames.to_local(hits[["x", "y", "z"]].to_numpy(np.float64), rows)
        # 0.01 mm: the CSV keeps 6 significant digits (10 µm above 1000 mm)
        inside = frames.contains(local, rows, tolerance=0.01)
        assert inside.all(), f"{(~inside).sum()} hits off their module, e.g. {local[~inside][:3]}"
        # the named module is, among the modules of its layer that contain the hit, the nearest
        # (the endcap numbering of ACTS differs from TrackML's: ids must have been translated)
        xyz = hits[["x", "y", "z"]].to_numpy(np.float64)
        for (volume, layer), group in hits.groupby(["volume_id", "layer_id"]):
            candidates = np.flatnonzero((frames.keys[:, 0] == volume) & (frames.keys[:, 1] == layer))
            position = xyz[group.index.to_numpy()]
            k = min(8, len(candidates))
            _distance, nearest = cKDTree(frames.centre[candidates]).query(position, k=k)
            near_rows = candidates[nearest]  # [n, k], sorted by distance
            contains = np.stack(
                [
                    frames.contains(frames.to_local(position, near_rows[:, j]), near_rows[:, j], 0.01)
                    for j in range(k)
                ],
                axis=1,
            )
            assert contains.any(axis=1).all()
            first_containing = near_rows[np.arange(len(position)), contains.argmax(axis=1)]
            assert np.array_equal(frames.keys[first_containing, 2], group["module_id"].to_numpy())


def test_truth_particles_exist_and_nhits_match(simulated_dir: Path) -> None:
    for ref in list_events(simulated_dir):
        event = read_event(ref)
        truth, particles = event.truth, event.particles
        signal = truth.loc[truth["particle_id"] != 0, "particle_id"]
        assert set(signal) <= set(particles["particle_id"])
        counted = signal.value_counts().reindex(particles["particle_id"]).fillna(0).astype(int)
        assert np.array_equal(counted.to_numpy(), particles["nhits"].to_numpy())
        # noise and short tracks carry no weight
        nhits = truth["particle_id"].map(particles.set_index("particle_id")["nhits"]).fillna(0)
        assert (truth.loc[(truth["particle_id"] == 0) | (nhits < 4), "weight"] == 0).all()


@pytest.mark.parametrize("fraction", [0.15, 0.3])
def test_noise_fraction_is_close_to_the_setting(detectors_csv: Path, fraction: float) -> None:
    event = simulate_event(small_config(detectors_csv, noise_fraction=fraction), 3)
    noise = (event.truth["particle_id"] == 0).mean()
    assert abs(noise - fraction) <= 0.02
    assert (event.truth.loc[event.truth["particle_id"] == 0, "weight"] == 0).all()


def test_same_seed_gives_identical_files(tmp_path: Path, simulated_dir: Path, detectors_csv: Path) -> None:
    again = tmp_path / "again"
    simulate(small_config(detectors_csv), again, events=2, progress=False)
    names = sorted(p.name for p in simulated_dir.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert filecmp.cmp(simulated_dir / name, again / name, shallow=False), name
    other = simulate_event(small_config(detectors_csv, seed=8), 0)
    first = read_event(simulated_dir / "event000000000-hits.csv.gz")
    assert len(other.hits) != len(first.hits) or not np.allclose(other.hits["x"], first.hits["x"])


def test_an_event_does_not_depend_on_the_others(simulated_dir: Path, detectors_csv: Path) -> None:
    """Event 1 alone (as a parallel worker makes it) equals event 1 of the series."""
    alone = simulate_event(small_config(detectors_csv), 1)
    stored = read_event(simulated_dir / "event000000001-hits.csv.gz")
    assert alone.n_hits == stored.n_hits
    np.testing.assert_allclose(alone.hits["x"], stored.hits["x"], rtol=1e-5, atol=1e-3)
    assert np.array_equal(alone.truth["particle_id"], stored.truth["particle_id"])


@pytest.mark.slow
def test_parallel_workers_write_the_same_files(
    tmp_path: Path, simulated_dir: Path, detectors_csv: Path
) -> None:
    parallel = tmp_path / "parallel"
    summary = simulate(small_config(detectors_csv), parallel, events=2, workers=2, progress=False)
    assert [e.event_id for e in summary.events] == [0, 1]
    for path in simulated_dir.iterdir():
        assert filecmp.cmp(path, parallel / path.name, shallow=False), path.name


def test_geometric_digitization_makes_cells(detectors_csv: Path, frames: ModuleFrames) -> None:
    from trackflow.events.digitization import cell_bins

    event = simulate_event(small_config(detectors_csv, digitization="geometric"), 0)
    cells = event.cells
    assert cells is not None
    assert set(cells["hit_id"]) == set(event.hits["hit_id"])  # every hit, noise included, has cells
    hits = event.hits.set_index("hit_id").loc[cells["hit_id"]]
    rows = frames.rows(hits["volume_id"], hits["layer_id"], hits["module_id"])
    bins_u, bins_v = cell_bins(frames)
    assert ((cells["ch0"] >= 0) & (cells["ch0"] < bins_u[rows])).all()
    assert ((cells["ch1"] >= 0) & (cells["ch1"] < bins_v[rows])).all()
    # a pixel cluster's cells surround the hit: the hit is within its cells' extent (+1 cell)
    pixel = hits["volume_id"].isin([7, 8, 9]).to_numpy()
    local = frames.to_local(hits[["x", "y", "z"]].to_numpy(np.float64), rows)
    u_cell = (local[:, 0] + frames.half_u_max[rows]) / frames.pitch_u[rows]
    assert (np.abs(u_cell - cells["ch0"].to_numpy() - 0.5)[pixel] < 4).mean() > 0.95


@pytest.mark.slow
def test_particles_from_a_real_event(tmp_path: Path, trackml_dir: Path, detectors_csv: Path) -> None:
    # 1005: the file with the most vertices (2,086), which must all fit in the particle ids
    source = trackml_dir / "event000001005-particles.csv.gz"
    config = small_config(detectors_csv, particles_from=source, rotate_phi=False)
    event = simulate_event(config, 0)
    real = pd.read_csv(source)
    assert len(event.particles) >= len(real) * 0.95  # all charged primaries (+ secondaries)
    assert 0.8 * len(real) * 10 < event.n_hits < 1.6 * len(real) * 13
    assert abs((event.truth["particle_id"] == 0).mean() - 0.15) <= 0.02


def test_trackml_weights_follow_the_challenge_definition() -> None:
    # particle 1: 6 hits, pT 5 GeV; particle 2: 3 hits (too short); noise
    truth = pd.DataFrame(
        {
            "hit_id": np.arange(1, 11),
            "particle_id": [1, 1, 1, 1, 1, 1, 2, 2, 2, 0],
            "tz": [50.0, 10.0, 30.0, 20.0, 40.0, 60.0, 1.0, 2.0, 3.0, 0.0],
        }
    )
    particles = pd.DataFrame({"particle_id": [1, 2], "vz": [0.0, 0.0], "px": [5.0, 1.0], "py": [0.0, 0.0]})
    weights = trackml_weights(truth, particles)
    assert weights.sum() == pytest.approx(1.0)
    assert (weights[6:] == 0).all()
    by_order = weights[np.argsort(truth["tz"].to_numpy()[:6])]  # along the track from the vertex
    assert by_order[0] == by_order.max()  # the first hit weighs most
    assert by_order[-1] > by_order[3]  # the end counts more than the middle


def test_bad_settings_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="digitization"):
        SimulationConfig(digitization="analog")
    with pytest.raises(ConfigError, match="noise_fraction"):
        SimulationConfig(noise_fraction=1.0)
    with pytest.raises(ConfigError, match="particles_from"):
        SimulationConfig(particles_from=tmp_path).particle_files()


def test_particles_from_takes_a_directory_a_file_or_a_pattern(trackml_dir: Path) -> None:
    every = SimulationConfig(particles_from=trackml_dir).particle_files()
    assert len(every) == 9 and every == sorted(every)
    held_out = trackml_dir / "event000001020-particles.csv.gz"
    assert SimulationConfig(particles_from=held_out).particle_files() == [held_out]
    training = SimulationConfig(
        particles_from=trackml_dir / "event0000010[01]?-particles.csv.gz"
    ).particle_files()
    assert len(training) == 8 and held_out not in training


def test_module_frames_put_real_hits_on_their_modules(trackml_dir: Path, frames: ModuleFrames) -> None:
    """The frame arithmetic the hit-on-module test relies on, checked on real TrackML hits."""
    hits = pd.read_csv(trackml_dir / "event000001001-hits.csv.gz")
    xyz = hits[["x", "y", "z"]].to_numpy(np.float64)
    rows = frames.rows(hits["volume_id"], hits["layer_id"], hits["module_id"])
    assert (rows >= 0).all()
    # a few real endcap strip hits lie up to 0.32 mm past the trapezoid's side, hence 0.5 mm
    assert frames.contains(frames.to_local(xyz, rows), rows, tolerance=0.5).all()
    # the file rounds rotations to 6 digits: not exactly orthonormal, so a round trip is good to ~1e-5 mm
    np.testing.assert_allclose(frames.to_global(frames.to_local(xyz, rows), rows), xyz, atol=1e-3)
    shifted = frames.rows(hits["volume_id"], hits["layer_id"], hits["module_id"] + 1)
    known = shifted >= 0
    wrong = frames.contains(frames.to_local(xyz[known], shifted[known]), shifted[known], tolerance=0.5)
    assert wrong.mean() < 0.05


# --------------------------------------------------------------------------- atomic runs
def write_particles(path: Path, n: int = 20) -> Path:
    """A small TrackML particles file: ``n`` charged pions from the origin, pT 1-3 GeV."""
    rng = np.random.default_rng(5)
    pt, phi, eta = rng.uniform(1.0, 3.0, n), rng.uniform(-np.pi, np.pi, n), rng.uniform(-2.0, 2.0, n)
    pd.DataFrame(
        {
            "particle_id": np.arange(1, n + 1),
            "vx": 0.0,
            "vy": 0.0,
            "vz": 0.0,
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta),
            "q": rng.choice([-1, 1], n),
            "nhits": 10,
        }
    ).to_csv(path, index=False)
    return path


def tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_failed_run_leaves_the_output_as_it_was(tmp_path: Path, detectors_csv: Path) -> None:
    # file 0 is good, file 1 lacks its momenta: the second event of a run fails after the first
    # one is written
    sources = tmp_path / "particles"
    sources.mkdir()
    write_particles(sources / "event000000000-particles.csv")
    pd.read_csv(sources / "event000000000-particles.csv").drop(columns=["px", "py", "pz"]).to_csv(
        sources / "event000000001-particles.csv", index=False
    )
    failing = small_config(detectors_csv, particles_from=sources)
    out = tmp_path / "runs" / "events"
    with pytest.raises(EventFileError, match=re.escape("event000000001-particles.csv: missing column")):
        simulate(failing, out, events=2, progress=False)
    assert not out.exists()
    assert list((tmp_path / "runs").iterdir()) == []  # no staging directory left either

    simulate(small_config(detectors_csv), out, events=1, progress=False)
    before = tree(out)
    with pytest.raises(EventFileError, match="missing column"):
        simulate(failing, out, events=2, first_event=2, progress=False)  # files 2 % 2, 3 % 2
    assert tree(out) == before
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["events"]


def test_runs_with_other_first_events_fill_one_directory(
    tmp_path: Path, simulated_dir: Path, detectors_csv: Path
) -> None:
    out = tmp_path / "events"
    simulate(small_config(detectors_csv), out, events=1, progress=False)
    summary = simulate(small_config(detectors_csv), out, events=1, first_event=1, progress=False)
    assert [ref.event_id for ref in list_events(out)] == [0, 1]
    assert all(path.parent == out and path.is_file() for path in summary.events[0].paths.values())
    # the same files as one run of both events: staging changes nothing in them
    assert tree(out) == tree(simulated_dir)

    # an id the directory already holds is refused, naming both, before anything is simulated
    with pytest.raises(ConfigError, match=rf"{re.escape(str(out))}: already holds event id\(s\) 1\b"):
        simulate(small_config(detectors_csv), out, events=2, first_event=1, progress=False)
    assert tree(out) == tree(simulated_dir)
    # unless overwriting is asked for: every file of the event is replaced, stale ones removed
    stale = out / "event000000001-cells.csv.gz"
    stale.write_bytes(b"from an older run")
    simulate(small_config(detectors_csv), out, events=1, first_event=1, progress=False, overwrite=True)
    assert tree(out) == tree(simulated_dir)
