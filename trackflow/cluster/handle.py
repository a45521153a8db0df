"""What :func:`~trackflow.cluster.open_cluster` yields: a running cluster and its client, the
workers it has, and the one error for workers that did not come up."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client
from distributed.security import Security

from trackflow.cluster.resources import offers_gpu
from trackflow.cluster.squeue import squeue_ids
from trackflow.errors import TrackflowError


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
class ClusterHandle:
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
        """The address the client is connected to (``tcp://...`` or ``tls://...``)."""
        scheduler = self.client.scheduler
        if scheduler is None:
            raise RuntimeError("the cluster's client is not connected to a scheduler")
        return str(scheduler.address)

    def worker_kinds(self) -> list[WorkerKind]:
        """Every worker now connected, asked from the scheduler itself (not the client's cache)."""

        def describe(dask_scheduler: Any) -> list[tuple[str, str, dict[str, float]]]:
            return [
                (address, str(ws.name), dict(ws.resources)) for address, ws in dask_scheduler.workers.items()
            ]

        return [
            WorkerKind(address, name, "gpu" if offers_gpu(resources) else "cpu", resources)
            for address, name, resources in self.client.run_on_scheduler(describe)
        ]

    def gpu_worker_count(self) -> int:
        return sum(w.kind == "gpu" for w in self.worker_kinds())

    def job_ids(self) -> list[str]:
        """Slurm job ids of this run that are still queued or running (empty for non-Slurm)."""
        if self.job_name is None:
            return []
        return squeue_ids(self.job_name)


def wait_for_workers(client: Client, count: int, timeout: float, what: str) -> list[str]:
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
