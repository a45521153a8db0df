"""Getting Dask workers: one module per way, :func:`open_cluster` the one entry point.

- :mod:`~trackflow.cluster.local`: worker processes on this machine (``"local"``);
- :mod:`~trackflow.cluster.connect`: a scheduler already running (an address, a scheduler file);
- :mod:`~trackflow.cluster.slurm`: Slurm jobs (``slurm-cpu``, ``slurm-gpu``, ``slurm-mixed``, a
  profile name), with the dask-jobqueue profiles of :mod:`~trackflow.cluster.profiles`
  (package data ``jobqueue.yaml``) and per-run TLS (:mod:`~trackflow.cluster.tls`);
- :mod:`~trackflow.cluster.squeue`: the Slurm queue (a run's jobs, their states, cancelling them);
- :mod:`~trackflow.cluster.options`: :class:`ClusterOptions`, where the workers come from and how
  many, as reconstruct, bench, stream and serve take it;
- :mod:`~trackflow.cluster.handle`: what ``open_cluster`` yields; :mod:`~trackflow.cluster.probes`:
  measurements of a running cluster; :mod:`~trackflow.cluster.resources`: the GPU resource.

Knows Dask and Slurm; never the pipeline, runs or benchmarks. Names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "open_cluster": "open",
    "ClusterOptions": "options",
    "ClusterHandle": "handle",
    "ClusterStartError": "handle",
    "WorkerKind": "handle",
    "GPU_RESOURCE": "resources",
    "gpu_request": "resources",
    "offers_gpu": "resources",
    "load_profiles": "profiles",
    "profile_settings": "profiles",
    "is_gpu_profile": "profiles",
    "cancel_jobs": "squeue",
    "lifetime_args": "slurm",
    "walltime_seconds": "slurm",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
