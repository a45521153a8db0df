"""Dask clusters for trackflow: local processes, an existing scheduler, or Slurm jobs.

:func:`open_cluster` is the one entry point. Its ``spec`` says where the workers come from:

- ``"local"``: a ``LocalCluster`` of worker processes on the loopback interface (plain TCP; the
  port is not reachable from other machines). ``gpu_workers`` adds workers with the Dask
  resource ``GPU=1``.
- ``"tcp://host:port"`` / ``"tls://host:port"`` or ``scheduler_file=``: connect to a running
  scheduler (batch mode, ``slurm/trackflow.sbatch``); nothing is started or stopped.
- ``"slurm-cpu"`` / ``"slurm-gpu"``: a dask-jobqueue ``SLURMCluster`` of the ``cpu`` / ``gpu``
  profile; ``adapt=(MIN, MAX)`` makes the job count adaptive.
- ``"slurm-mixed"``: a CPU ``SLURMCluster`` owns the scheduler (and adapts, if asked); GPU jobs
  (``SLURMJob`` of the ``gpu`` profile, Dask resource ``GPU=1``, ``--gres=gpu:1``) join the same
  scheduler and are scaled explicitly, since ``adapt()`` knows nothing of resources.
- any other name: that profile of ``jobqueue:`` in dask.config (``slurm/jobqueue.yaml``, the
  user's dask config, ``profile_file``).

Slurm clusters use TLS with per-run certificates (:mod:`trackflow.workflow.security`) unless
``insecure=True``. Every wait has a timeout, and closing cancels every job of the run: nothing is
left in ``squeue`` afterwards. Nothing here runs a Slurm command at import time.

Start-up faults are survived: a local worker that fails to start (its process died, as a node
may at start-up) is started again, up to ``workflow.cluster.start_attempts`` times; a Slurm
cluster whose jobs do not all connect within ``start_timeout`` goes on with the workers that
did. Either way :attr:`OpenCluster.start_problems` says what is missing, in one line each. A
cluster that gets no worker at all raises :class:`ClusterStartError` (one line; the CLI's exit 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.config
import yaml
from distributed import Client, LocalCluster, Nanny
from distributed.core import Status
from distributed.security import Security

import trackflow
from trackflow import config
from trackflow.errors import ConfigError, TrackflowError
from trackflow.workflow.security import (
    TlsFiles,
    remove_certificates,
    tls_security,
    write_certificates,
)

#: The profiles file shipped in the repository (``slurm/jobqueue.yaml``).
JOBQUEUE_FILE = Path(trackflow.__file__).resolve().parents[1] / "slurm" / "jobqueue.yaml"
#: Directory that holds the ``trackflow`` package: put on the jobs' PYTHONPATH.
PACKAGE_ROOT = Path(trackflow.__file__).resolve().parents[1]
#: ``--cluster`` names that map onto profiles.
SLURM_SPECS = {"slurm-cpu": "cpu", "slurm-gpu": "gpu", "slurm-mixed": "cpu"}
GPU_RESOURCE = "GPU"


class ClusterStartError(TrackflowError, RuntimeError):
    """Workers did not come up (in time), or the cluster spec cannot be used."""


@dataclass(frozen=True)
class WorkerKind:
    """What one Dask worker offers: ``kind`` is ``"gpu"`` when it has the GPU resource."""

    address: str
    name: str
    kind: str
    resources: dict[str, float]


@dataclass
class OpenCluster:
    """A running cluster and the client connected to it (yielded by :func:`open_cluster`).

    ``cluster`` is None when trackflow connected to a scheduler it did not start. Unpacks as
    ``cluster, client = handle`` too.
    """

    client: Client
    cluster: Any | None
    spec: str
    profile: str | None = None
    security: Security | None = None
    run_dir: Path | None = None
    gpu_jobs: list[Any] = field(default_factory=list)
    job_name: str | None = None
    #: workers asked for that did not come up, one line each (empty when all did)
    start_problems: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.cluster, self.client))

    @property
    def scheduler_address(self) -> str:
        return self.client.scheduler.address

    def worker_kinds(self) -> list[WorkerKind]:
        """Every worker now connected, asked from the scheduler itself (not the client's cache)."""

        def describe(dask_scheduler: Any) -> list[tuple[str, str, dict[str, float]]]:
            return [
                (address, str(ws.name), dict(ws.resources)) for address, ws in dask_scheduler.workers.items()
            ]

        return [
            WorkerKind(address, name, "gpu" if resources.get(GPU_RESOURCE) else "cpu", resources)
            for address, name, resources in self.client.run_on_scheduler(describe)
        ]

    def gpu_worker_count(self) -> int:
        return sum(w.kind == "gpu" for w in self.worker_kinds())

    def job_ids(self) -> list[str]:
        """Slurm job ids of this run that are still queued or running (empty for non-Slurm)."""
        if self.job_name is None:
            return []
        return _squeue_ids(self.job_name)


# --- profiles -------------------------------------------------------------------------------------


_LOADED_DEFAULTS: set[Path] = set()


def load_profiles(profile_file: Path | None = None) -> dict[str, Any]:
    """Put ``slurm/jobqueue.yaml`` into dask.config as defaults (user config keeps precedence) and
    return the settings of ``profile_file`` for ``dask.config.set`` (empty without one).

    A profile in ``profile_file`` that dask-jobqueue does not know yet gets the keys it leaves out
    from ``jobqueue.slurm`` (dask-jobqueue reads named sections only).
    """
    import dask_jobqueue  # noqa: F401 - registers jobqueue.slurm defaults in dask.config

    shipped = Path(config.get("workflow.cluster.jobqueue_file", None) or JOBQUEUE_FILE)
    if shipped not in _LOADED_DEFAULTS and shipped.is_file():
        dask.config.update_defaults(_read_profiles(shipped))
        _LOADED_DEFAULTS.add(shipped)  # once: update_defaults appends to dask's list each call
    if profile_file is None:
        return {}
    overrides = _read_profiles(Path(profile_file).expanduser())
    base = dask.config.get("jobqueue.slurm")
    settings: dict[str, Any] = {}
    for name, section in overrides["jobqueue"].items():
        known = dask.config.get(f"jobqueue.{name}", None)
        merged = copy.deepcopy(base if known is None else known)
        # dask's own merge: 'worker_extra_args' meets 'worker-extra-args' as dask.config does
        dask.config.update(merged, section or {})
        settings[f"jobqueue.{name}"] = merged
    return settings


def _read_profiles(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read profiles ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobqueue"), dict):
        raise ConfigError(f"{path}: a profiles file needs a top-level 'jobqueue:' mapping")
    return data


def profile_settings(profile: str) -> dict[str, Any]:
    """The dask-jobqueue settings of ``profile`` (after :func:`load_profiles`)."""
    settings = dask.config.get(f"jobqueue.{profile}", None)
    if not isinstance(settings, dict) or "cores" not in settings:
        known = sorted(
            name
            for name, value in dask.config.get("jobqueue", {}).items()
            if isinstance(value, dict) and "cores" in value and name not in _SCHEDULER_NAMES
        )
        raise ConfigError(
            f"--cluster {profile}: no such Slurm profile (known: {', '.join(known)}; "
            f"add it to {JOBQUEUE_FILE} or pass --profile FILE)"
        )
    return settings


# dask-jobqueue's own sections, which are not trackflow profiles
_SCHEDULER_NAMES = {"slurm", "pbs", "sge", "lsf", "oar", "htcondor", "moab", "local"}


def setting(settings: dict[str, Any], key: str, default: Any = None) -> Any:
    """``settings[key]`` with dask's spelling tolerance (``worker-extra-args`` or
    ``worker_extra_args``); ``default`` when missing or null."""
    for spelling in (key, key.replace("-", "_")):
        if settings.get(spelling) is not None:
            return settings[spelling]
    return default


def is_gpu_profile(settings: dict[str, Any]) -> bool:
    """True when the profile's workers get the Dask resource ``GPU`` (``--resources GPU=n``)."""
    args = [str(a) for a in setting(settings, "worker-extra-args") or []]
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--resources=") else None
        if arg == "--resources" and i + 1 < len(args):
            value = args[i + 1]
        if value and re.search(rf"(^|[\s,]){GPU_RESOURCE}=", value):
            return True
    return False


def walltime_seconds(walltime: str) -> int:
    """Slurm walltime (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in seconds."""
    days = 0
    text = str(walltime).strip()
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
        parts = [int(p) for p in text.split(":")] + [0, 0]
        hours, minutes, seconds = parts[:3]
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts[:3]
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def lifetime_args(walltime: str) -> list[str]:
    """Worker ``--lifetime``/``--lifetime-stagger`` that retire workers before the walltime kill:
    a stagger of 5 % of the walltime (at most 5 min), and a minute of margin beyond it."""
    total = walltime_seconds(walltime)
    stagger = min(300, total // 20)
    lifetime = max(60, total - 2 * stagger - 60)
    return ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]


async def _bounded(step: Any, timeout: float) -> None:
    """Await ``step()`` (a job's sbatch or scancel) for at most ``timeout`` s."""
    await asyncio.wait_for(step(), timeout)


# --- Slurm helpers --------------------------------------------------------------------------------


def _squeue_ids(job_name: str) -> list[str]:
    """Ids of queued/running jobs called ``job_name`` (squeue's default states; no completed)."""
    done = subprocess.run(
        ["squeue", "-h", "-n", job_name, "-o", "%i"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.split() if done.returncode == 0 else []


def _squeue_states(job_name: str) -> str:
    """One line per job of the run: id, state and Slurm's reason (for error messages)."""
    done = subprocess.run(
        ["squeue", "-h", "-n", job_name, "-o", "%i %T %r"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "; ".join(done.stdout.split("\n")[:-1]) or "no job in squeue"


def cancel_jobs(job_name: str, timeout: float = 30.0) -> list[str]:
    """``scancel`` every job called ``job_name`` and wait until squeue shows none of them.

    Returns the ids that had to be cancelled (an empty list after a clean close).
    """
    leftover = _squeue_ids(job_name)
    if leftover:
        subprocess.run(["scancel", *leftover], capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + timeout
    while _squeue_ids(job_name) and time.monotonic() < deadline:
        time.sleep(0.5)
    return leftover


def _require_slurm(spec: str) -> None:
    for command in ("sbatch", "squeue", "scancel"):
        if shutil.which(command) is None:
            raise ClusterStartError(
                f"--cluster {spec}: Slurm command {command!r} not found on PATH "
                "(run on a login node, or start a local Slurm with `sudo slurm/local/up.sh`)"
            )


def default_run_dir() -> Path:
    """``trackflow.workflow.cluster.run_dir`` or ``~/.cache/trackflow/runs/<time>-<random>``.

    It must be on a file system the compute nodes see (home usually is): job logs and the TLS
    files go there.
    """
    configured = config.get("workflow.cluster.run_dir", None)
    base = Path(configured).expanduser() if configured else Path.home() / ".cache/trackflow/runs"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return base / f"{stamp}-{secrets.token_hex(3)}"


# --- the entry point ------------------------------------------------------------------------------


@contextlib.contextmanager
def open_cluster(
    spec: str,
    workers: int = 1,
    threads_per_worker: int | None = None,
    *,
    adapt: tuple[int, int] | None = None,
    profile_file: Path | None = None,
    insecure: bool = False,
    scheduler_file: Path | None = None,
    run_dir: Path | None = None,
    gpu_workers: int = 0,
    gpu_profile: str = "gpu",
    start_timeout: float | None = None,
    close_timeout: float | None = None,
) -> Iterator[OpenCluster]:
    """Start (or connect to) a Dask cluster, yield it with a connected client, close it.

    Parameters
    ----------
    spec
        ``"local"``, a scheduler address, ``"slurm-cpu"``, ``"slurm-gpu"``, ``"slurm-mixed"`` or a
        profile name (see the module docstring). Ignored when ``scheduler_file`` is given.
    workers
        Local: worker processes. Slurm: worker jobs of the CPU (or, for ``slurm-gpu`` and GPU
        profiles, the GPU) profile; each job runs the profile's ``processes`` workers.
    threads_per_worker
        Threads per worker process; None keeps the profile's ``cores / processes`` (local: 1).
    adapt
        ``(MIN, MAX)`` worker jobs: scale the CPU jobs adaptively instead of ``workers``. GPU jobs
        never adapt (dask's adaptive scaling ignores resources).
    profile_file
        YAML with a ``jobqueue:`` mapping merged over ``slurm/jobqueue.yaml`` for this call.
    insecure
        Slurm clusters only: plain TCP instead of TLS. Local clusters are always plain (loopback).
    scheduler_file
        Connect to the scheduler written there (``dask scheduler --scheduler-file``).
    run_dir
        Directory for job logs and TLS files, visible from the compute nodes; default
        :func:`default_run_dir`.
    gpu_workers
        Extra workers with the ``GPU`` resource: GPU jobs for ``slurm-mixed`` (default 1 there),
        GPU-flagged worker processes for ``local`` (routing only; they see no device).
    gpu_profile
        Profile of the GPU jobs of ``slurm-mixed``.
    start_timeout, close_timeout
        Seconds to wait for the workers to connect (the error names the profile and the jobs'
        Slurm states), and for the jobs to leave squeue on close. Defaults:
        ``workflow.cluster.start_timeout`` (300 s) and ``workflow.cluster.close_timeout`` (60 s).
    """
    start_timeout = float(
        start_timeout if start_timeout is not None else config.get("workflow.cluster.start_timeout", 300)
    )
    close_timeout = float(
        close_timeout if close_timeout is not None else config.get("workflow.cluster.close_timeout", 60)
    )
    if workers < 0 or gpu_workers < 0:
        raise ConfigError(f"--workers {workers} / --gpu-workers {gpu_workers}: must be >= 0")
    if adapt is not None and not 0 <= adapt[0] <= adapt[1]:
        raise ConfigError(f"--adapt {adapt[0]}:{adapt[1]}: need 0 <= MIN <= MAX")
    if threads_per_worker is not None and threads_per_worker < 1:
        raise ConfigError(f"--threads-per-worker {threads_per_worker}: must be >= 1")

    if scheduler_file is not None:
        with _connect(
            str(scheduler_file), start_timeout, scheduler_file=Path(scheduler_file), run_dir=run_dir
        ) as handle:
            yield handle
    elif spec.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        with _connect(spec, start_timeout, run_dir=run_dir) as handle:
            yield handle
    elif spec == "local":
        with _local(workers, threads_per_worker or 1, gpu_workers, adapt, start_timeout) as handle:
            yield handle
    else:
        with _slurm(
            spec,
            workers,
            threads_per_worker,
            adapt=adapt,
            profile_file=profile_file,
            insecure=insecure,
            run_dir=run_dir,
            gpu_workers=gpu_workers,
            gpu_profile=gpu_profile,
            start_timeout=start_timeout,
            close_timeout=close_timeout,
        ) as handle:
            yield handle


def _wait_for_workers(client: Client, count: int, timeout: float, what: str) -> list[str]:
    """Wait up to ``timeout`` s for ``count`` workers. With fewer, but at least one, the run goes
    on: returns the one-line note saying so (empty when all came). None at all: ClusterStartError."""
    if count <= 0:
        return []
    try:
        client.wait_for_workers(count, timeout=timeout)
    except TimeoutError:
        have = len(client.scheduler_info(n_workers=-1)["workers"])
        if have == 0:
            raise ClusterStartError(f"{what}: no worker after {timeout:.0f} s (asked for {count})") from None
        return [f"{what}: {have} of {count} workers after {timeout:.0f} s; going on with {have}"]
    return []


# --- connect to an existing scheduler -------------------------------------------------------------


def _connection_security(address: str, run_dir: Path | None, scheduler_file: Path | None) -> Security | None:
    """Security for a client of a running scheduler: dask's TLS config if set (the sbatch script
    exports it), else the TLS files in ``run_dir/tls`` or next to the scheduler file."""
    from_config = Security()
    if not address.startswith("tls://") or from_config.tls_ca_file:
        return from_config
    candidates = [d / "tls" for d in (run_dir, scheduler_file and scheduler_file.parent) if d]
    for directory in candidates:
        files = TlsFiles.in_directory(directory)
        if files.exist():
            return tls_security(files)
    raise ConfigError(
        f"{address}: a TLS scheduler needs certificates; none in dask config "
        f"(distributed.comm.tls.*) nor in {', '.join(map(str, candidates)) or 'a run directory'}"
    )


@contextlib.contextmanager
def _connect(
    target: str, timeout: float, *, scheduler_file: Path | None = None, run_dir: Path | None = None
) -> Iterator[OpenCluster]:
    if scheduler_file is not None:
        deadline = time.monotonic() + timeout
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.5)  # batch mode: the scheduler may still be starting
        if not scheduler_file.is_file():
            raise ClusterStartError(f"{scheduler_file}: no scheduler file after {timeout:.0f} s")
        try:
            address = yaml.safe_load(scheduler_file.read_text())["address"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            raise ConfigError(f"{scheduler_file}: not a Dask scheduler file") from None
    else:
        address = target
    security = _connection_security(address, run_dir, scheduler_file)
    try:
        client = Client(address, security=security, timeout=timeout)
    except OSError as error:
        raise ClusterStartError(
            f"{target}: cannot connect to the scheduler at {address} ({' '.join(str(error).split())[:200]})"
        ) from None
    try:
        problems = _wait_for_workers(client, 1, timeout, f"scheduler {address}")
        yield OpenCluster(
            client=client,
            cluster=None,
            spec=target,
            security=security,
            run_dir=run_dir,
            start_problems=problems,
        )
    finally:
        client.close()


# --- local ----------------------------------------------------------------------------------------


def _start_local_workers(cluster: LocalCluster, attempts: int) -> dict[str, str]:
    """Start every worker of ``cluster.worker_spec``; one that fails to start (its process
    died, a port was taken) is started again, ``attempts`` times in all. Returns the workers that
    never came up, with why (one line each); their specs are dropped, so the cluster stops trying."""
    failed: list[str] = []
    reasons: dict[str, str] = {}
    for _ in range(attempts):
        try:
            cluster.sync(cluster._correct_state)
        except Exception as error:  # "Nanny failed to start." for any one of them
            cause = error.__cause__ or error
            reason = " ".join(f"{type(cause).__name__}: {cause}".split())[:200]
        else:
            reason = "did not start"
        failed = [name for name, w in cluster.workers.items() if w.status != Status.running]
        if not failed:
            return {}
        for name in failed:
            reasons[name] = reason
            worker = cluster.workers.pop(name)
            with contextlib.suppress(Exception):
                cluster.sync(worker.close)
    for name in failed:
        cluster.worker_spec.pop(name, None)
    return {str(name): reasons[name] for name in failed}


@contextlib.contextmanager
def _local(
    workers: int, threads_per_worker: int, gpu_workers: int, adapt: tuple[int, int] | None, timeout: float
) -> Iterator[OpenCluster]:
    if adapt and gpu_workers:
        raise ConfigError("--adapt with --gpu-workers: a local cluster adapts CPU workers only; drop one")
    try:
        # the scheduler only: workers are started below, where a failed start can be retried
        cluster = LocalCluster(
            n_workers=0,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",  # loopback only: the plain port is not reachable from elsewhere
            dashboard_address=":0",
        )
    except (RuntimeError, OSError) as error:
        raise ClusterStartError(
            f"--cluster local: the scheduler did not start ({' '.join(str(error).split())[:200]})"
        ) from None
    try:
        template = cluster.new_worker_spec()
        base_options = next(iter(template.values()))["options"]
        if not adapt:
            for _ in range(workers):
                cluster.worker_spec.update(cluster.new_worker_spec())
        for i in range(gpu_workers):
            # Extra specs beside LocalCluster's own (named 0, 1, ...); scale() would drop them,
            # which is why --adapt is refused with GPU workers here.
            cluster.worker_spec[f"gpu-{i}"] = {
                "cls": Nanny,
                "options": {
                    **base_options,
                    "resources": {GPU_RESOURCE: 1},
                    "env": {"CUDA_VISIBLE_DEVICES": str(i)},
                },
            }
        asked = len(cluster.worker_spec)
        attempts = max(1, int(config.get("workflow.cluster.start_attempts", 2)))
        lost = _start_local_workers(cluster, attempts)
        if asked and not cluster.worker_spec:
            raise ClusterStartError(
                f"--cluster local: no worker started ({asked} asked for, each tried {attempts} "
                f"time(s); {next(iter(lost.values()))})"
            )
        problems = [
            f"--cluster local: worker {name} failed to start {attempts} time(s) ({reason}); "
            f"going on with {len(cluster.worker_spec)} of {asked} workers"
            for name, reason in lost.items()
        ]
        if adapt:
            cluster.adapt(minimum=adapt[0], maximum=adapt[1])
        client = Client(cluster)
        try:
            expected = adapt[0] if adapt else len(cluster.worker_spec)
            problems += _wait_for_workers(client, expected, timeout, "--cluster local")
            yield OpenCluster(client=client, cluster=cluster, spec="local", start_problems=problems)
        finally:
            client.close()
    finally:
        cluster.close()


# --- Slurm ----------------------------------------------------------------------------------------


def _job_kwargs(
    settings: dict[str, Any], threads_per_worker: int | None, run_dir: Path, job_name: str
) -> dict[str, Any]:
    """Arguments for SLURMCluster/SLURMJob overriding what trackflow must control."""
    processes = int(setting(settings, "processes") or 1)
    kwargs: dict[str, Any] = {
        "python": setting(settings, "python") or sys.executable,
        "job_name": job_name,
        "log_directory": str(setting(settings, "log-directory") or run_dir / "logs"),
        "job_script_prologue": [
            *(setting(settings, "job-script-prologue") or []),
            f'export PYTHONPATH="{PACKAGE_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"',
        ],
    }
    extra = list(setting(settings, "worker-extra-args") or [])
    if not any(str(a).startswith("--lifetime") for a in extra):
        extra += lifetime_args(setting(settings, "walltime") or "00:30:00")
    kwargs["worker_extra_args"] = extra
    if threads_per_worker is not None:
        kwargs["cores"] = threads_per_worker * processes
        kwargs["processes"] = processes
    return kwargs


@contextlib.contextmanager
def _slurm(
    spec: str,
    workers: int,
    threads_per_worker: int | None,
    *,
    adapt: tuple[int, int] | None,
    profile_file: Path | None,
    insecure: bool,
    run_dir: Path | None,
    gpu_workers: int,
    gpu_profile: str,
    start_timeout: float,
    close_timeout: float,
) -> Iterator[OpenCluster]:
    from dask_jobqueue import SLURMCluster
    from dask_jobqueue.slurm import SLURMJob

    # profile_file settings hold for this cluster's lifetime only (adapt() makes jobs later)
    with dask.config.set(load_profiles(profile_file)):
        profile = SLURM_SPECS.get(spec, spec)
        settings = profile_settings(profile)
        mixed = spec == "slurm-mixed"
        if mixed:
            gpu_workers = gpu_workers or 1
            gpu_settings = profile_settings(gpu_profile)
        elif gpu_workers:
            raise ConfigError(f"--gpu-workers {gpu_workers}: only with --cluster slurm-mixed")
        _require_slurm(spec)  # after the profile check: a typo in --cluster is named as such
        run_dir = Path(run_dir) if run_dir is not None else default_run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        run_id = secrets.token_hex(4)
        job_name = f"{setting(settings, 'name') or 'trackflow'}-{run_id}"

        tls_files = None if insecure else write_certificates(run_dir / "tls")
        security = None if tls_files is None else tls_security(tls_files)
        protocol = "tcp://" if insecure else "tls://"
        processes = int(setting(settings, "processes") or 1)
        what = f"--cluster {spec} (profile {profile!r}{f' + {gpu_profile!r}' if mixed else ''})"

        cluster = None
        client = None
        gpu_jobs: list[Any] = []
        try:
            cluster = SLURMCluster(
                config_name=profile,
                security=security,
                protocol=protocol,
                **_job_kwargs(settings, threads_per_worker, run_dir, job_name),
            )
            if adapt is not None:
                cluster.adapt(minimum_jobs=adapt[0], maximum_jobs=adapt[1])
            else:
                cluster.scale(jobs=workers)
            if mixed:
                gpu_kwargs = _job_kwargs(gpu_settings, threads_per_worker, run_dir, job_name)
                for i in range(gpu_workers):
                    job = SLURMJob(
                        scheduler=cluster.scheduler_address,
                        name=f"gpu-{i}",
                        config_name=gpu_profile,
                        security=security,
                        protocol=protocol,
                        interface=setting(gpu_settings, "interface"),
                        **gpu_kwargs,
                    )
                    cluster.sync(_bounded, job.start, start_timeout)
                    gpu_jobs.append(job)
            client = Client(cluster, security=security)
            expected = (adapt[0] if adapt is not None else workers) * processes
            expected += gpu_workers * int(setting(gpu_settings, "processes") or 1) if mixed else 0
            try:
                problems = _wait_for_workers(client, expected, start_timeout, what)
            except ClusterStartError as error:
                raise ClusterStartError(
                    f"{error}; Slurm says: {_squeue_states(job_name)}; job logs in {run_dir / 'logs'}"
                ) from None
            yield OpenCluster(
                client=client,
                cluster=cluster,
                spec=spec,
                profile=profile,
                security=security,
                run_dir=run_dir,
                gpu_jobs=gpu_jobs,
                job_name=job_name,
                start_problems=problems,
            )
        finally:
            if client is not None:
                client.close()
            for job in gpu_jobs:
                with contextlib.suppress(Exception):
                    cluster.sync(_bounded, job.close, close_timeout)
            if cluster is not None:
                cluster.close(timeout=close_timeout)
            cancel_jobs(job_name, timeout=close_timeout)  # anything close() missed
            if tls_files is not None:
                remove_certificates(tls_files)
