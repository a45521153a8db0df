"""trackflow stream against a real Slurm (``sudo slurm/local/up.sh``): two worker jobs of the
``cpu`` profile (TLS), and a worker job cancelled mid-stream, after which every arrival is still
answered or counted as shed (Dask runs the lost worker's tasks again on the other job).

Skips without Slurm (fails in CI, like tests/test_slurm.py); no Slurm command runs at import or
collection time, and no job of a test is left in squeue afterwards.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import require, slurm_problem

import trackflow
from trackflow.service import Service
from trackflow.service.stream import StreamConfig, run_stream
from trackflow.service.stream import open_loop as stream_open_loop

pytestmark = pytest.mark.slurm
START, CLOSE = 120.0, 60.0


def _squeue(*args: str) -> str:
    listing = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, timeout=30, check=False)
    return listing.stdout


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    problem = slurm_problem()
    require(problem is None, f"no Slurm reachable: run `sudo slurm/local/up.sh` ({problem})")
    yield tmp_path
    leftover = [
        line.split("|")[0].strip()
        for line in _squeue("-O", "JobID:|,StdErr:200").splitlines()
        if str(tmp_path) in line
    ]
    if leftover:
        subprocess.run(["scancel", *leftover], check=False, timeout=30)
        pytest.fail(f"jobs left in squeue after the test (now cancelled): {leftover}")


@pytest.fixture(scope="module")
def events_dir(sim_detectors: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("slurm-stream-events")
    trackflow.simulate(trackflow.SimulationConfig(seed=5, pileup=5), out, events=3, progress=False)
    return out


@pytest.mark.timeout(600)
def test_stream_on_two_slurm_worker_jobs(run_dir: Path, events_dir: Path, tmp_path: Path) -> None:
    from test_service import check_stream

    with trackflow.open_cluster(
        "slurm-cpu", 2, 1, run_dir=run_dir, start_timeout=START, close_timeout=CLOSE
    ) as handle:
        assert len(handle.job_ids()) == 2 and handle.scheduler_address.startswith("tls://")
        out = tmp_path / "stream"
        stream = run_stream(
            StreamConfig(
                events_dir, out, rates=[0.5, 1.5], duration=4.0, calibration_events=4, client=handle.client
            )
        )
    check_stream(stream, out)
    assert stream["counts"]["failed"] == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_worker_job_cancelled_mid_stream_loses_no_event(run_dir: Path, events_dir: Path) -> None:
    events = [ref.load(("hits",)) for ref in trackflow.list_events(events_dir)]
    with trackflow.open_cluster(
        "slurm-cpu", 2, 1, insecure=True, run_dir=run_dir, start_timeout=START, close_timeout=CLOSE
    ) as handle:
        jobs = sorted(handle.job_ids())
        assert len(jobs) == 2
        with Service(handle.client) as service:
            # warm: one event per worker, then an open-loop minute-fraction at about capacity
            for future in service.map(events[:2]):
                future.result(timeout=300)

            def cancel_one() -> None:
                time.sleep(4.0)  # mid-stream: events are queued and running on both jobs
                subprocess.run(["scancel", jobs[0]], check=True, timeout=30)

            killer = threading.Thread(target=cancel_one)
            killer.start()
            result = stream_open_loop(
                service,
                events,
                rate_hz=2.0,
                duration_s=12.0,
                rng=np.random.default_rng(0),
                drain_timeout_s=300.0,
                sample_interval_s=0.2,
            )
            killer.join()
            counts = service.counts()
        assert jobs[0] not in _squeue("-o", "%i").split()
    assert result["drained"] and result["unanswered"] == 0
    assert result["done"] + result["shed"] + result["failed"] == result["arrivals"]
    assert result["failed"] == 0  # the lost worker's events ran again on the other job
    assert counts.pending == 0
