"""Workers as local processes: a ``LocalCluster`` on the loopback interface (plain TCP; the port
is not reachable from other machines), ``gpu_workers`` of them flagged with the GPU resource.

A worker that fails to start (its process died, as a node may at start-up) is started again, up
to ``workflow.cluster.start_attempts`` times; one that never does is left out and named. Each
worker's nanny restarts it when it passes 95 % of ``workflow.cluster.memory_limit``; the
cluster runs with trackflow's Dask settings (:mod:`trackflow.cluster.dask_settings`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dask.config
from distributed import Client, LocalCluster, Nanny
from distributed.core import Status

from trackflow import config
from trackflow.cluster import dask_settings
from trackflow.cluster.handle import ClusterHandle, ClusterStartError, wait_for_workers
from trackflow.cluster.resources import gpu_request
from trackflow.errors import ConfigError


async def _start_spec_workers(cluster: LocalCluster) -> None:
    """Start the workers of ``cluster.worker_spec`` that are not running: awaiting a
    ``SpecCluster`` does that, and raises when one fails to start."""
    await cluster


def start_local_workers(cluster: LocalCluster, attempts: int) -> dict[str, str]:
    """Start every worker of ``cluster.worker_spec``; one that fails to start (its process
    died, a port was taken) is started again, ``attempts`` times in all. Returns the workers that
    never came up, with why (one line each); their specs are dropped, so the cluster stops trying."""
    failed: list[str] = []
    reasons: dict[str, str] = {}
    for _ in range(attempts):
        try:
            cluster.sync(_start_spec_workers, cluster)
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
def local_cluster(
    workers: int, threads_per_worker: int, gpu_workers: int, adapt: tuple[int, int] | None, timeout: float
) -> Iterator[ClusterHandle]:
    if adapt and gpu_workers:
        raise ConfigError("adapt with gpu_workers: a local cluster adapts CPU workers only; drop one")
    chosen = dask_settings.chosen()
    memory_limit = config.get("workflow.cluster.memory_limit")
    try:
        # the scheduler only: workers are started below, where a failed start can be retried;
        # the scheduler reads trackflow's Dask settings now, every nanny gets them (config=)
        with dask.config.set(chosen):
            cluster = LocalCluster(
                n_workers=0,
                threads_per_worker=threads_per_worker,
                processes=True,
                host="127.0.0.1",  # loopback only: the plain port is not reachable from elsewhere
                dashboard_address=":0",
                memory_limit=memory_limit,
                config=chosen,
            )
    except (RuntimeError, OSError) as error:
        raise ClusterStartError(
            f"cluster local: the scheduler did not start ({' '.join(str(error).split())[:200]})"
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
                    "resources": gpu_request(),
                    "env": {"CUDA_VISIBLE_DEVICES": str(i)},
                },
            }
        asked = len(cluster.worker_spec)
        attempts = max(1, int(config.get("workflow.cluster.start_attempts")))
        lost = start_local_workers(cluster, attempts)
        if asked and not cluster.worker_spec:
            raise ClusterStartError(
                f"cluster local: no worker started ({asked} asked for, each tried {attempts} "
                f"time(s); {next(iter(lost.values()))})"
            )
        problems = [
            f"cluster local: worker {name} failed to start {attempts} time(s) ({reason}); "
            f"going on with {len(cluster.worker_spec)} of {asked} workers"
            for name, reason in lost.items()
        ]
        if adapt:
            cluster.adapt(minimum=adapt[0], maximum=adapt[1])
        client = Client(cluster)
        try:
            expected = adapt[0] if adapt else len(cluster.worker_spec)
            problems += wait_for_workers(client, expected, timeout, "cluster local")
            yield ClusterHandle(client=client, cluster=cluster, spec="local", start_problems=problems)
        finally:
            client.close()
    finally:
        cluster.close()
