"""Where a run's Dask workers come from, and how many (:class:`ClusterOptions`).

One typed value for what ``trackflow reconstruct``, ``bench``, ``stream`` and ``serve`` share
(:class:`~trackflow.run.reconstruct.ReconstructConfig`, :class:`~trackflow.bench.BenchConfig`,
:class:`~trackflow.service.stream.StreamConfig` and the CLI each hold one), handed as it is to
:func:`~trackflow.cluster.open_cluster`. The cluster's timeouts and directories are settings
(``workflow.cluster.*`` in trackflow.yaml) that :func:`open_cluster` reads itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trackflow.errors import ConfigError

if TYPE_CHECKING:
    from trackflow.cluster.handle import ClusterHandle

__all__ = ["LOCAL", "ClusterOptions", "check_cluster"]

#: the spec of a cluster of worker processes on this machine
LOCAL = "local"


@dataclass(frozen=True)
class ClusterOptions:
    """Where the workers come from (``spec``, ``scheduler_file``, ``profile_file``, ``insecure``)
    and how many there are (``workers``, ``threads_per_worker``, ``gpu_workers``, ``adapt``).

    ``spec``: ``"local"`` (worker processes on this machine), a scheduler address (``tcp://``,
    ``tls://``), ``"slurm-cpu"``, ``"slurm-gpu"``, ``"slurm-mixed"`` or a dask-jobqueue profile
    name (:mod:`trackflow.cluster.open`). ``scheduler_file``: join the scheduler written to this
    JSON file instead (``spec`` is then ignored). ``workers``: worker processes (local) or worker
    jobs (Slurm); None = the machine's cores for ``local``, 1 job otherwise
    (:meth:`worker_count`). ``threads_per_worker``: Dask threads of each worker process (tasks it
    runs at once; torch's own threads are the setting ``threads``). ``gpu_workers``: workers with
    the ``GPU`` resource besides (``slurm-mixed``: GPU jobs; ``local``: GPU-flagged processes).
    ``adapt``: ``(MIN, MAX)`` worker jobs, scaled with the load instead of ``workers``.
    ``profile_file``: a dask-jobqueue YAML merged over the shipped profiles. ``insecure``: plain
    TCP instead of TLS on a Slurm cluster (local clusters are loopback-only and always plain).
    """

    spec: str = LOCAL
    workers: int | None = None
    threads_per_worker: int = 1
    gpu_workers: int = 0
    adapt: tuple[int, int] | None = None
    scheduler_file: Path | None = None
    profile_file: Path | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers {self.workers}: must be >= 1")
        if self.threads_per_worker < 1:
            raise ConfigError(f"threads_per_worker {self.threads_per_worker}: must be >= 1")
        if self.gpu_workers < 0:
            raise ConfigError(f"gpu_workers {self.gpu_workers}: must be >= 0")
        if self.adapt is not None:
            low, high = self.adapt
            if not 0 <= low <= high:
                raise ConfigError(f"adapt {low}:{high}: need 0 <= MIN <= MAX")
            object.__setattr__(self, "adapt", (int(low), int(high)))
        # frozen: normalise paths given as strings (notebooks, scripts) in place
        for name in ("scheduler_file", "profile_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def is_local(self) -> bool:
        """Worker processes this run starts on this machine (no scheduler to join)."""
        return self.spec == LOCAL and self.scheduler_file is None

    def worker_count(self) -> int:
        """``workers``, or its default: the machine's cores for ``local``, 1 job otherwise."""
        if self.workers is not None:
            return self.workers
        return (os.cpu_count() or 1) if self.spec == LOCAL else 1

    def slots(self) -> int:
        """Tasks the cluster runs at once as asked for, known before it starts: (workers, the most
        an adaptive cluster may have, plus GPU workers) × threads per worker. A Slurm job running
        several worker processes (its profile's ``processes``) counts as one worker here."""
        workers = self.adapt[1] if self.adapt is not None else self.worker_count()
        return max((workers + self.gpu_workers) * self.threads_per_worker, 1)

    def open_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~trackflow.cluster.open_cluster` besides ``spec`` and
        ``workers`` (for callers that take them as ``**cluster_options``, e.g. ``Service.open``)."""
        return {
            "threads_per_worker": self.threads_per_worker,
            "adapt": self.adapt,
            "profile_file": self.profile_file,
            "insecure": self.insecure,
            "scheduler_file": self.scheduler_file,
            "gpu_workers": self.gpu_workers,
        }

    @contextlib.contextmanager
    def open(self) -> Iterator[ClusterHandle]:
        """Start (or join) the cluster, yield its :class:`~trackflow.cluster.ClusterHandle` with
        a connected client, close it at the end (:func:`~trackflow.cluster.open_cluster`)."""
        from trackflow.cluster.open import open_cluster

        with open_cluster(self.spec, self.worker_count(), **self.open_kwargs()) as handle:
            yield handle


def check_cluster(value: object) -> ClusterOptions:
    """``value`` if it is a :class:`ClusterOptions`; else a ConfigError saying what ``cluster``
    takes (a config's ``cluster`` was a spec string before it held the options)."""
    if not isinstance(value, ClusterOptions):
        raise ConfigError(
            f"cluster {value!r}: a ClusterOptions, e.g. ClusterOptions(spec='slurm-cpu', workers=4)"
        )
    return value
