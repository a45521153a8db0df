"""Workers as Slurm jobs (dask-jobqueue): ``slurm-cpu`` and ``slurm-gpu`` are a ``SLURMCluster``
of the ``cpu`` / ``gpu`` profile (:mod:`trackflow.cluster.profiles`); ``slurm-mixed`` is a CPU
``SLURMCluster`` that owns the scheduler (and adapts, if asked) plus GPU jobs (``SLURMJob`` of the
``gpu`` profile, Dask resource ``GPU=1``, ``--gres=gpu:1``) scaled explicitly, since ``adapt()``
knows nothing of resources.

Jobs use TLS with per-run certificates (:mod:`trackflow.cluster.tls`) unless ``insecure``.
Every wait has a timeout, and closing cancels every job of the run: nothing is left in
``squeue`` afterwards. Nothing here runs a Slurm command at import time. A cluster whose jobs do
not all connect within ``start_timeout`` goes on with the workers that did.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
from distributed import Client

from trackflow import config
from trackflow.cluster import dask_settings
from trackflow.cluster.handle import ClusterHandle, ClusterStartError, wait_for_workers
from trackflow.cluster.profiles import SLURM_SPECS, load_profiles, profile_settings, setting
from trackflow.cluster.squeue import cancel_jobs, squeue_states
from trackflow.cluster.tls import remove_certificates, tls_security, write_certificates
from trackflow.errors import ConfigError


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


def _require_slurm(spec: str) -> None:
    for command in ("sbatch", "squeue", "scancel"):
        if shutil.which(command) is None:
            raise ClusterStartError(
                f"cluster {spec}: Slurm command {command!r} not found on PATH "
                "(run on a login node, or start a local Slurm with `sudo slurm/local/up.sh`)"
            )


def default_run_dir() -> Path:
    """``workflow.cluster.run_dir`` (trackflow.yaml) or ``~/.cache/trackflow/runs/<time>-<random>``.

    It must be on a file system the compute nodes see (home usually is): job logs and the TLS
    files go there.
    """
    configured = config.get("workflow.cluster.run_dir")
    base = Path(configured).expanduser() if configured else Path.home() / ".cache/trackflow/runs"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return base / f"{stamp}-{secrets.token_hex(3)}"


def _job_kwargs(
    settings: dict[str, Any], threads_per_worker: int | None, run_dir: Path, job_name: str
) -> dict[str, Any]:
    """Arguments for SLURMCluster/SLURMJob overriding what trackflow must control."""
    processes = int(setting(settings, "processes") or 1)
    kwargs: dict[str, Any] = {
        "python": setting(settings, "python") or sys.executable,
        "job_name": job_name,
        "log_directory": str(setting(settings, "log-directory") or run_dir / "logs"),
        # no PYTHONPATH here: the jobs run this interpreter, which imports the installed
        # trackflow; a checkout used through PYTHONPATH reaches them in the environment that
        # sbatch exports (--export=ALL, Slurm's default)
        # trackflow's Dask settings reach the workers through the job's environment
        "job_script_prologue": [
            *list(setting(settings, "job-script-prologue") or []),
            *dask_settings.job_exports(),
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
def slurm_cluster(
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
) -> Iterator[ClusterHandle]:
    from dask_jobqueue.slurm import SLURMCluster, SLURMJob

    # profile_file settings hold for this cluster's lifetime only (adapt() makes jobs later)
    with dask.config.set(load_profiles(profile_file)):
        profile = SLURM_SPECS.get(spec, spec)
        settings = profile_settings(profile)
        mixed = spec == "slurm-mixed"
        if mixed:
            gpu_workers = gpu_workers or 1
            gpu_settings = profile_settings(gpu_profile)
        elif gpu_workers:
            raise ConfigError(f"gpu_workers {gpu_workers}: only with cluster slurm-mixed")
        _require_slurm(spec)  # after the profile check: a typo in the cluster spec is named as such
        run_dir = Path(run_dir) if run_dir is not None else default_run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        run_id = secrets.token_hex(4)
        job_name = f"{setting(settings, 'name') or 'trackflow'}-{run_id}"

        tls_files = None if insecure else write_certificates(run_dir / "tls")
        security = None if tls_files is None else tls_security(tls_files)
        protocol = "tcp://" if insecure else "tls://"
        processes = int(setting(settings, "processes") or 1)
        what = f"cluster {spec} (profile {profile!r}{f' + {gpu_profile!r}' if mixed else ''})"

        cluster = None
        client = None
        gpu_jobs: list[Any] = []
        try:
            with dask.config.set(dask_settings.chosen()):  # the scheduler reads them as it starts
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
                problems = wait_for_workers(client, expected, start_timeout, what)
            except ClusterStartError as error:
                raise ClusterStartError(
                    f"{error}; Slurm says: {squeue_states(job_name)}; job logs in {run_dir / 'logs'}"
                ) from None
            yield ClusterHandle(
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
            if cluster is not None:
                for job in gpu_jobs:
                    with contextlib.suppress(Exception):
                        cluster.sync(_bounded, job.close, close_timeout)
                cluster.close(timeout=close_timeout)
            cancel_jobs(job_name, timeout=close_timeout)  # anything close() missed
            if tls_files is not None:
                remove_certificates(tls_files)
