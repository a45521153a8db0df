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
- any other name: that profile of ``jobqueue:`` in dask.config (the shipped
  ``trackflow/cluster/jobqueue.yaml``, the user's dask config, ``profile_file``).

Slurm clusters use TLS with per-run certificates (:mod:`trackflow.cluster.tls`) unless
``insecure=True``. Every wait has a timeout, and closing cancels every job of the run: nothing is
left in ``squeue`` afterwards. Nothing here runs a Slurm command at import time.

Start-up faults are survived: a local worker that fails to start (its process died, as a node
may at start-up) is started again, up to ``workflow.cluster.start_attempts`` times; a Slurm
cluster whose jobs do not all connect within ``start_timeout`` goes on with the workers that
did. Either way :attr:`ClusterHandle.start_problems` says what is missing, in one line each. A
cluster that gets no worker at all raises :class:`ClusterStartError` (one line; the CLI's exit 2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from trackflow import config
from trackflow.cluster.connect import connect_cluster
from trackflow.cluster.handle import ClusterHandle
from trackflow.cluster.local import local_cluster
from trackflow.cluster.slurm import slurm_cluster
from trackflow.errors import ConfigError


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
) -> Iterator[ClusterHandle]:
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
        YAML with a ``jobqueue:`` mapping merged over the shipped profiles
        (``trackflow/cluster/jobqueue.yaml``) for this call.
    insecure
        Slurm clusters only: plain TCP instead of TLS. Local clusters are always plain (loopback).
    scheduler_file
        Connect to the scheduler written there (``dask scheduler --scheduler-file``).
    run_dir
        Directory for job logs and TLS files, visible from the compute nodes; default
        :func:`~trackflow.cluster.slurm.default_run_dir`.
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
        start_timeout if start_timeout is not None else config.get("workflow.cluster.start_timeout")
    )
    close_timeout = float(
        close_timeout if close_timeout is not None else config.get("workflow.cluster.close_timeout")
    )
    if workers < 0 or gpu_workers < 0:
        raise ConfigError(f"workers {workers} / gpu_workers {gpu_workers}: must be >= 0")
    if adapt is not None and not 0 <= adapt[0] <= adapt[1]:
        raise ConfigError(f"adapt {adapt[0]}:{adapt[1]}: need 0 <= MIN <= MAX")
    if threads_per_worker is not None and threads_per_worker < 1:
        raise ConfigError(f"threads_per_worker {threads_per_worker}: must be >= 1")

    if scheduler_file is not None:
        with connect_cluster(
            str(scheduler_file), start_timeout, scheduler_file=Path(scheduler_file), run_dir=run_dir
        ) as handle:
            yield handle
    elif spec.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        with connect_cluster(spec, start_timeout, run_dir=run_dir) as handle:
            yield handle
    elif spec == "local":
        with local_cluster(workers, threads_per_worker or 1, gpu_workers, adapt, start_timeout) as handle:
            yield handle
    else:
        with slurm_cluster(
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
