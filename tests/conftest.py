"""Shared fixtures: where the real data lives, and how a missing prerequisite is reported.

In CI (``CI=true``) a missing prerequisite is a failure, never a skip: the tests that claim real
TrackML files, real Slurm or a real kernel must really run there.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRACKFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: devices a stage test runs on: always the CPU, CUDA where a device is present (marker ``gpu``)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ],
    ),
]


def slurm_problem() -> str | None:
    """None when slurmctld answers and a node can take jobs, else what is wrong (one line)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=15, check=False)

    try:
        ping = run("scontrol", "ping")
        if "UP" not in ping.stdout:
            said = (ping.stdout + ping.stderr).strip().splitlines() or ["no answer"]
            return f"scontrol ping: {said[0].strip()}"
        states = run("sinfo", "-h", "-o", "%t").stdout.split()
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if {"idle", "mix", "alloc"} & set(states) else f"no usable node (sinfo states: {states})"


def require(condition: bool, message: str) -> None:
    """Skip with ``message`` outside CI; fail in CI, where everything must be present."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {message}")
    pytest.skip(message)


def need_acts() -> None:
    """Skip (fail in CI) unless pyacts, the ``sim`` extra, is installed."""
    installed = importlib.util.find_spec("acts") is not None
    require(installed, "pyacts is not installed (pip install 'trackflow[sim]')")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real inputs (../shared/data): TrackML events, detector description, Exa.TrkX reference."""
    require(SHARED_DATA.is_dir(), f"real data not found at {SHARED_DATA} (set TRACKFLOW_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trackml_dir(shared_data: Path) -> Path:
    """The 9 full Kaggle TrackML training events (hits + particles, no truth)."""
    path = shared_data / "trackml" / "kaggle_train_1"
    require(path.is_dir(), f"TrackML events not found at {path}")
    return path


@pytest.fixture(scope="session")
def detectors_csv(shared_data: Path) -> Path:
    path = shared_data / "trackml" / "detectors.csv.gz"
    require(path.is_file(), f"detector description not found at {path}")
    return path


@pytest.fixture(scope="session")
def sim_detectors() -> Path:
    """A detector description to simulate with, as ``trackflow simulate`` picks it: TrackML's file
    in the shared data (always in CI), else the table derived from ACTS's Generic Detector (in the
    user's cache, as ``make run`` writes it; needs pyacts). No ../shared data needed."""
    path = SHARED_DATA / "trackml" / "detectors.csv.gz"
    if path.is_file() or IN_CI:
        require(path.is_file(), f"detector description not found at {path}")
        return path
    from trackflow.events.detector import derived_detectors_path

    need_acts()
    return derived_detectors_path(missing=path)


@pytest.fixture(scope="session")
def exatrkx_dir(shared_data: Path) -> Path:
    """The reference Exa.TrkX model and stage outputs (REFERENCE.md §4)."""
    path = shared_data / "exatrkx-service"
    require(path.is_dir(), f"Exa.TrkX reference not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_events(tmp_path_factory: pytest.TempPathFactory, detectors_csv: Path) -> Path:
    """Three small Fatras events (a few hundred particles each): seconds to simulate (training
    and distillation tests)."""
    need_acts()
    from trackflow.events.simulation import SimulationConfig
    from trackflow.run.parallel_simulation import simulate

    out = tmp_path_factory.mktemp("train-events")
    config = SimulationConfig(
        seed=11, pileup=4, particles_per_vertex=10, pt_min=0.5, pt_max=5.0, detectors=detectors_csv
    )
    simulate(config, out, events=3, progress=False)
    return out


def gun_events(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    seed: int,
    pileup: int,
    events: int,
    particles_per_vertex: int | None = 10,
) -> Path:
    """``events`` small particle-gun events (ACTS Fatras, ``pileup`` vertices of
    ``particles_per_vertex`` particles, None: the simulation's default; ~140 hits per vertex of 10)
    in a fresh temporary folder ``name``: what the service, serve and Triton tests send through
    their servers."""
    import trackflow

    out = tmp_path_factory.mktemp(name)
    size = {} if particles_per_vertex is None else {"particles_per_vertex": particles_per_vertex}
    config = trackflow.SimulationConfig(seed=seed, pileup=pileup, **size)
    trackflow.simulate(config, out, events=events, progress=False)
    return out


def hits_of(directory: Path) -> list:
    """The events of ``directory`` as a reconstruction reads them: hits only."""
    import trackflow

    return [ref.load(("hits",)) for ref in trackflow.list_events(directory)]
