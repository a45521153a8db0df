"""Against a real Slurm (``sudo slurm/local/up.sh``): worker jobs from the shipped profiles, GPU
routing through gres, TLS by default, adaptive replacement of a cancelled job, batch mode.

Every test is bounded (pytest-timeout and the cluster's own start/close timeouts), and the
``no_jobs_left`` fixture cancels — and fails the test over — any job of the test still queued
afterwards. Nothing here calls a Slurm command at import or collection time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import require, slurm_problem
from distributed import Client, as_completed, wait

from trackflow.cluster import ClusterStartError, open_cluster
from trackflow.cluster.tls import tls_security, write_certificates
from trackflow.errors import TrackflowError

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
START = 120.0  # s for worker jobs to connect; the local Slurm needs ~5 s
CLOSE = 60.0


def _slurm(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def slurm_available() -> None:
    """A reachable slurmctld with a usable node; fails in CI, skips elsewhere."""
    problem = slurm_problem()
    require(problem is None, f"no Slurm reachable: run `sudo slurm/local/up.sh` ({problem})")


def _jobs_writing_under(directory: Path) -> dict[str, str]:
    """Queued/running jobs whose stderr goes under ``directory``: id -> name."""
    listing = _slurm("squeue", "-h", "-O", "JobID:|,StdErr:|,Name:200").stdout
    jobs = {}
    for line in listing.splitlines():
        job_id, stderr, name = (part.strip() for part in line.split("|", 2))
        if stderr.startswith(str(directory)):
            jobs[job_id] = name
    return jobs


@pytest.fixture
def run_dir(slurm_available: None, tmp_path: Path) -> Iterator[Path]:
    """The run directory of one test; afterwards no job of it may be left in squeue."""
    yield tmp_path
    leftover = _jobs_writing_under(tmp_path)
    if leftover:
        _slurm("scancel", *leftover)
        pytest.fail(f"jobs left in squeue after the test (now cancelled): {leftover}")


# Worker jobs cannot import this test module, so the functions they run are made inside
# factories: not importable by name, they travel by value (cloudpickle).
def _job_probe() -> Callable[[], tuple[str, str | None]]:
    def job_of_worker() -> tuple[str, str | None]:
        """Runs on a worker: its Slurm job id and the GPUs Slurm gave it."""
        return os.environ["SLURM_JOB_ID"], os.environ.get("CUDA_VISIBLE_DEVICES")

    return job_of_worker


def _slow_square_task() -> Callable[[int], int]:
    def slow_square(x: int) -> int:
        time.sleep(0.3)
        return x * x

    return slow_square


def _squeue_ids() -> set[str]:
    return set(_slurm("squeue", "-h", "-o", "%i").stdout.split())


@pytest.mark.timeout(300)
def test_cpu_profile_runs_worker_jobs(run_dir: Path) -> None:
    with open_cluster("slurm-cpu", 2, 1, run_dir=run_dir, start_timeout=START, close_timeout=CLOSE) as handle:
        job_ids = handle.job_ids()
        assert len(job_ids) == 2
        assert set(job_ids) <= _squeue_ids()
        kinds = handle.worker_kinds()
        assert [k.kind for k in kinds] == ["cpu", "cpu"]
        # each worker really runs inside one of the two jobs
        on_workers = handle.client.run(_job_probe())
        assert {job for job, _ in on_workers.values()} == set(job_ids)
        futures = handle.client.map(lambda x: x * x, range(100))
        wait(futures, timeout=120)
        squares = handle.client.gather(futures)
        assert sum(squares) == sum(x * x for x in range(100))
        assert handle.scheduler_address.startswith("tls://")  # TLS by default
    assert not set(job_ids) & _squeue_ids()


@pytest.mark.timeout(300)
def test_mixed_cluster_routes_gpu_tasks_to_the_gpu_job(run_dir: Path) -> None:
    with open_cluster(
        "slurm-mixed",
        1,
        1,
        gpu_workers=1,
        run_dir=run_dir,
        start_timeout=START,
        close_timeout=CLOSE,
    ) as handle:
        kinds = {k.address: k.kind for k in handle.worker_kinds()}
        assert sorted(kinds.values()) == ["cpu", "gpu"]
        assert len(handle.job_ids()) == 2
        gpu_tasks = [handle.client.submit(_job_probe(), pure=False, resources={"GPU": 1}) for _ in range(8)]
        wait(gpu_tasks, timeout=120)
        results = handle.client.gather(gpu_tasks)
        where = handle.client.who_has(gpu_tasks)
        assert {kinds[address] for addresses in where.values() for address in addresses} == {"gpu"}
        # Slurm gave the job one (fake) GPU through gres
        (visible,) = {visible for _, visible in results}
        assert visible is not None and visible.isdigit()  # one device index, e.g. "0"
        cpu_side = handle.client.run(_job_probe())
        cpu_jobs = {job for address, (job, _) in cpu_side.items() if kinds[address] == "cpu"}
        gpu_jobs = {job for job, _ in results}
        assert cpu_jobs.isdisjoint(gpu_jobs)
        # no GPU in the CPU job's environment
        assert all(v is None for a, (_, v) in cpu_side.items() if kinds[a] == "cpu")


@pytest.mark.timeout(300)
def test_gpu_profile_cluster_has_gpu_workers_only(run_dir: Path) -> None:
    with open_cluster("slurm-gpu", 1, 1, run_dir=run_dir, start_timeout=START, close_timeout=CLOSE) as handle:
        assert [k.kind for k in handle.worker_kinds()] == ["gpu"]
        assert handle.gpu_worker_count() == 1
        ((job, visible),) = handle.client.run(_job_probe()).values()
        assert handle.job_ids() == [job]
        assert visible is not None and visible.isdigit()


@pytest.mark.timeout(300)
def test_tls_scheduler_refuses_a_client_without_the_certificate(run_dir: Path) -> None:
    with open_cluster("slurm-cpu", 1, 1, run_dir=run_dir, start_timeout=START, close_timeout=CLOSE) as handle:
        address = handle.scheduler_address
        assert address.startswith("tls://")
        key = run_dir / "tls" / "key.pem"
        assert key.stat().st_mode & 0o777 == 0o600
        with pytest.raises(OSError):
            Client(address.replace("tls://", "tcp://"), timeout=5)
        with pytest.raises(OSError):
            Client(address, security=tls_security(write_certificates(run_dir / "x")), timeout=5)
        assert handle.client.submit(sum, [1, 2]).result(timeout=30) == 3  # ours still works
    assert not key.exists()  # the run's key is removed with the cluster


@pytest.mark.timeout(300)
def test_insecure_cluster_is_plain_tcp(run_dir: Path) -> None:
    with open_cluster(
        "slurm-cpu",
        1,
        1,
        insecure=True,
        run_dir=run_dir,
        start_timeout=START,
        close_timeout=CLOSE,
    ) as handle:
        assert handle.scheduler_address.startswith("tcp://")
        with Client(handle.scheduler_address, timeout=10) as stranger:
            assert stranger.submit(sum, [2, 2]).result(timeout=30) == 4
        assert not (run_dir / "tls").exists()


@pytest.mark.timeout(300)
def test_profile_file_defines_a_new_profile(run_dir: Path) -> None:
    profile_file = run_dir / "site.yaml"
    profile_file.write_text(
        "jobqueue:\n  tiny:\n    name: trackflow-tiny\n    cores: 1\n    memory: 1GiB\n"
        "    walltime: '00:10:00'\n    job-extra-directives: ['--comment=trackflow-test']\n"
    )
    with open_cluster(
        "tiny",
        1,
        profile_file=profile_file,
        run_dir=run_dir,
        start_timeout=START,
        close_timeout=CLOSE,
    ) as handle:
        (job_id,) = handle.job_ids()
        shown = _slurm("scontrol", "show", "job", job_id).stdout
        assert "JobName=trackflow-tiny" in shown
        assert "Comment=trackflow-test" in shown
        assert "TimeLimit=00:10:00" in shown


@pytest.mark.timeout(120)
def test_workers_that_never_start_give_a_clear_error_and_no_job(run_dir: Path) -> None:
    profile_file = run_dir / "late.yaml"
    profile_file.write_text(
        "jobqueue:\n  late:\n    cores: 1\n    memory: 1GiB\n"
        "    job-extra-directives: ['--begin=now+1hour']\n"
    )
    with (
        pytest.raises(ClusterStartError) as error,
        open_cluster("late", 1, profile_file=profile_file, run_dir=run_dir, start_timeout=8),
    ):
        pass
    message = str(error.value)
    assert "'late'" in message
    assert "PENDING" in message
    assert isinstance(error.value, TrackflowError)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_adaptive_cluster_survives_scancel_of_a_worker_job(run_dir: Path) -> None:
    n_tasks = 60
    with open_cluster(
        "slurm-cpu",
        0,
        1,
        adapt=(2, 2),
        insecure=True,
        run_dir=run_dir,
        start_timeout=START,
        close_timeout=CLOSE,
    ) as handle:
        client = handle.client
        before = set(handle.job_ids())
        assert len(before) == 2
        futures = client.map(_slow_square_task(), range(n_tasks))
        results: Counter[int] = Counter()
        cancelled = None
        for _future, value in as_completed(futures, with_results=True, timeout=300):
            results[value] += 1
            if cancelled is None and sum(results.values()) >= 5:
                # kill the job of a worker that holds results and is busy
                cancelled = sorted(before)[0]
                assert _slurm("scancel", cancelled).returncode == 0
        assert results == Counter(x * x for x in range(n_tasks))  # every task exactly once
        assert cancelled not in _squeue_ids()
        # adapt() submits a replacement job (after distributed's lost-worker timeout)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = set(handle.job_ids())
            if len(now) == 2 and now - before:
                break
            time.sleep(1)
        assert len(now) == 2 and now - before, f"no replacement job: {now}"
        client.wait_for_workers(2, timeout=START)


def _batch_client(tmp: Path) -> Path:
    """A stand-in client for batch mode: it connects through the scheduler file (as
    `trackflow ... --scheduler-file` does), writes what it computed, and exits 3 unless its
    first argument is `reconstruct` (to show that the job ends with the client's exit code)."""
    script = tmp / "client.py"
    script.write_text(
        "import json, sys\n"
        "from pathlib import Path\n"
        "from trackflow.cluster import open_cluster\n"
        "def main():\n"
        "    args = sys.argv[1:]\n"
        "    scheduler_file = Path(args[args.index('--scheduler-file') + 1])\n"
        "    out = Path(args[args.index('--out') + 1])\n"
        "    with open_cluster('', scheduler_file=scheduler_file, start_timeout=120) as h:\n"
        "        h.client.wait_for_workers(2, timeout=120)\n"
        "        squares = h.client.gather(h.client.map(lambda x: x * x, range(50)))\n"
        "        out.write_text(json.dumps({'sum': sum(squares),\n"
        "            'address': h.scheduler_address, 'workers': len(h.worker_kinds())}))\n"
        "    return 0 if args[0] == 'reconstruct' else 3\n"
        "if __name__ == '__main__':\n"
        "    sys.exit(main())\n"
    )
    return script


def _sbatch_and_wait(run_dir: Path, env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """Submit slurm/trackflow.sbatch, wait for the end; return its final JobState and exit code."""
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--output",
            str(run_dir / "slurm-%j.out"),
            "--error",
            str(run_dir / "slurm-%j.err"),
            str(REPO / "slurm" / "trackflow.sbatch"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=REPO,
        env=env,
    )
    job_id = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        shown = _slurm("scontrol", "show", "job", job_id).stdout
        fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
        state = f"{fields.get('JobState', '?')} {fields.get('ExitCode', '?')}"
        if fields.get("JobState") in {
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
        }:
            return state
        time.sleep(1)
    _slurm("scancel", job_id)
    pytest.fail(f"batch job {job_id} still {state} after {timeout} s")


@pytest.mark.timeout(200)
def test_insecure_batch_job_ends_with_the_client_exit_code(run_dir: Path) -> None:
    out = run_dir / "out.json"
    env = {
        **os.environ,
        "TRACKFLOW": f"{sys.executable} {_batch_client(run_dir)}",
        "TRACKFLOW_PYTHON": sys.executable,
        "TRACKFLOW_RUN_DIR": str(run_dir / "run"),
        "TRACKFLOW_INSECURE": "1",
    }
    state = _sbatch_and_wait(run_dir, env, "bench", "--out", str(out))
    logs = "\n".join(p.read_text()[-3000:] for p in sorted(run_dir.glob("slurm-*")))
    assert state == "FAILED 3:0", logs  # the client's exit code (3), after a full computation
    result = json.loads(out.read_text())
    assert result["sum"] == sum(x * x for x in range(50))
    assert result["workers"] == 2
    assert result["address"].startswith("tcp://")
    assert not (run_dir / "run" / "scheduler.json").exists()  # no stale scheduler file


# --------------------------------------------------------------------------- end to end (CLI)
# `trackflow reconstruct` on simulated events, on the local Slurm, compared with a LocalCluster
# run of the same events and models.
N_EVENTS = 12


def _trackflow(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.Popen[str]:
    """Start the trackflow CLI (the installed entry point, else trackflow.cli:main)."""
    entry = Path(sys.executable).with_name("trackflow")
    command = (
        [str(entry)] if entry.is_file() else [sys.executable, "-c", "from trackflow.cli import main; main()"]
    )
    return subprocess.Popen(
        [*command, *map(str, args)],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 300) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"trackflow did not finish in {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def _tiny_models(out: Path) -> Path:
    """A small untrained model directory (what `--models` takes): fast and deterministic."""
    import torch

    from trackflow.pipeline import model_files
    from trackflow.pipeline.embedding import EmbeddingNet
    from trackflow.pipeline.features import FeatureConfig
    from trackflow.pipeline.filter import FilterNet
    from trackflow.pipeline.gnn import InteractionGNN

    features = FeatureConfig()
    n = features.n_features
    embedding = {"in_features": n, "hidden": 32, "n_layers": 2, "out_dim": 8, "normalise": True}
    edge_filter = {"in_features": n, "hidden": 32, "n_layers": 2, "use_embedding_distance": False}
    gnn = {"in_features": n, "hidden": 16, "n_iterations": 2, "n_mlp_layers": 2}
    state = torch.random.get_rng_state()
    torch.manual_seed(7)
    try:
        stages = {
            "embedding": model_files.save_model(
                EmbeddingNet(**embedding), out, "embedding", kwargs=embedding
            ),
            "graph_building": model_files.StageEntry(config={"radius": 0.1, "max_neighbours": 16}),
            "filter": model_files.save_model(
                FilterNet(**edge_filter), out, "filter", config={"cut": 0.5}, kwargs=edge_filter
            ),
            "gnn": model_files.save_model(InteractionGNN(**gnn), out, "gnn", config={"cut": 0.5}, kwargs=gnn),
            "labelling": model_files.StageEntry(config={"method": "cc", "cut": 0.5}),
        }
    finally:
        torch.random.set_rng_state(state)
    model_files.write_manifest(out, stages, features=features.to_dict())
    return out


@pytest.fixture(scope="module")
def pipeline_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Simulated events (ACTS, through `trackflow simulate`), tiny models, and the submission of a
    LocalCluster run of them: (events, models, reference submission.csv)."""
    if not IN_CI:  # in CI a missing pyacts fails the simulation below, loudly
        pytest.importorskip("acts", reason="pyacts is needed to simulate events")
    base = tmp_path_factory.mktemp("e2e")
    events, models, local = base / "events", _tiny_models(base / "models"), base / "local"
    _finish(
        _trackflow(
            "simulate", "--out", events, "--events", N_EVENTS, "--seed", 11, "--pileup", 5, "--no-progress"
        )
    )
    _finish(
        _trackflow(
            "reconstruct",
            events,
            "--out",
            local,
            "--models",
            models,
            "--workers",
            2,
            "--batch-size",
            1,
            "--no-progress",
        )
    )
    return events, models, local / "submission.csv"


def _run_env(run_dir: Path) -> dict[str, str]:
    # job logs and TLS files of the CLI's clusters go under the test's directory
    return {**os.environ, "DASK_TRACKFLOW__WORKFLOW__CLUSTER__RUN_DIR": str(run_dir)}


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_reconstruct_on_slurm_cpu_equals_the_local_run(
    run_dir: Path, pipeline_inputs: tuple[Path, Path, Path]
) -> None:
    events, models, reference = pipeline_inputs
    out = run_dir / "out"
    process = _trackflow(
        "reconstruct",
        events,
        "--out",
        out,
        "--models",
        models,
        "--cluster",
        "slurm-cpu",
        "--workers",
        2,
        "--batch-size",
        1,
        "--no-progress",
        env=_run_env(run_dir),
    )
    seen: set[str] = set()
    while process.poll() is None:  # the worker jobs, as squeue shows them while it runs
        seen |= set(_jobs_writing_under(run_dir))
        time.sleep(0.2)
    output = _finish(process)
    assert len(seen) == 2, output[-2000:]
    report = _report(out)
    assert report["cluster"] == "slurm-cpu"
    assert report["events"]["done"] == report["events"]["total"] == N_EVENTS
    assert report["failed_events"] == []
    assert len(report["workers"]["per_worker"]) == 2
    assert all(w.startswith("tls://") for w in report["workers"]["per_worker"])
    assert (out / "submission.csv").read_bytes() == reference.read_bytes()
    assert not seen & _squeue_ids()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_mixed_cluster_runs_gpu_stages_only_on_the_gpu_worker(
    run_dir: Path, pipeline_inputs: tuple[Path, Path, Path]
) -> None:
    events, models, reference = pipeline_inputs
    out = run_dir / "out"
    _finish(
        _trackflow(
            "reconstruct",
            events,
            "--out",
            out,
            "--models",
            models,
            "--cluster",
            "slurm-mixed",
            "--workers",
            1,
            "--mode",
            "staged",
            "--batch-size",
            1,
            "--no-progress",
            env=_run_env(run_dir),
        )
    )
    report = _report(out)
    assert report["events"]["done"] == N_EVENTS
    assert (out / "submission.csv").read_bytes() == reference.read_bytes()
    per_worker = report["workers"]["per_worker"]
    gpu_workers = {a for a, w in per_worker.items() if w["resources"].get("GPU")}
    assert len(gpu_workers) == 1
    for address, worker in per_worker.items():
        nn_stages = {"embedding", "filter", "gnn"} & set(worker["stages"])
        assert bool(nn_stages) == (address in gpu_workers), (address, worker["stages"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sbatch_reconstruct_completes_with_the_local_output(
    run_dir: Path, pipeline_inputs: tuple[Path, Path, Path]
) -> None:
    events, models, reference = pipeline_inputs
    out = run_dir / "out"
    env = {**os.environ, "TRACKFLOW_PYTHON": sys.executable, "TRACKFLOW_RUN_DIR": str(run_dir / "run")}
    state = _sbatch_and_wait(
        run_dir,
        env,
        "reconstruct",
        str(events),
        "--out",
        str(out),
        "--models",
        str(models),
        "--batch-size",
        "1",
        "--no-progress",
        timeout=400,
    )
    logs = "\n".join(p.read_text()[-3000:] for p in sorted(run_dir.glob("slurm-*")))
    assert state == "COMPLETED 0:0", logs
    report = _report(out)
    assert report["events"]["done"] == N_EVENTS
    assert all(w.startswith("tls://") for w in report["workers"]["per_worker"])
    assert (out / "submission.csv").read_bytes() == reference.read_bytes()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_adaptive_run_survives_scancel_of_a_worker_job(
    run_dir: Path, pipeline_inputs: tuple[Path, Path, Path]
) -> None:
    events, models, reference = pipeline_inputs
    out = run_dir / "out"
    process = _trackflow(
        "reconstruct",
        events,
        "--out",
        out,
        "--models",
        models,
        "--cluster",
        "slurm-cpu",
        "--adapt",
        "2:2",
        "--batch-size",
        1,
        "--max-in-flight",
        2,
        "--no-progress",
        env=_run_env(run_dir),
    )
    cancelled = None
    deadline = time.monotonic() + 300
    jobs: dict[str, str] = {}
    while process.poll() is None and len(jobs) < 2 and time.monotonic() < deadline:
        jobs = _jobs_writing_under(run_dir)  # both worker jobs queued or running
        time.sleep(0.1)
    batches = out / "batches"
    while process.poll() is None and cancelled is None and time.monotonic() < deadline:
        # mid-run: a first batch written, others still to do (the run lasts a few seconds, so
        # only the file system is polled here)
        written = len(list(batches.glob("*.parquet"))) if batches.is_dir() else 0
        if written:
            cancelled = sorted(jobs)[0]
            assert _slurm("scancel", cancelled).returncode == 0
            assert written < N_EVENTS  # batches of one event: the run was not over yet
        time.sleep(0.02)
    output = _finish(process)
    assert cancelled is not None, f"the run ended before a job could be cancelled:\n{output}"
    report = _report(out)
    assert report["events"]["done"] == N_EVENTS
    assert report["failed_events"] == []
    submission = (out / "submission.csv").read_bytes()
    assert submission == reference.read_bytes()  # every event exactly once, same tracks
