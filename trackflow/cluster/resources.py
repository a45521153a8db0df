"""The Dask resource that marks GPU workers: its one spelling, for clusters and tasks alike.

A GPU worker is started with ``--resources GPU=1`` (Slurm ``gpu`` profile, local ``gpu_workers``);
a task that needs a GPU asks for :func:`gpu_request`, so Dask runs it on such a worker only.
"""

from __future__ import annotations

from collections.abc import Mapping

GPU_RESOURCE = "GPU"


def gpu_request() -> dict[str, float]:
    """The ``resources=`` of a task that must run on a GPU worker (a fresh dict each call)."""
    return {GPU_RESOURCE: 1}


def offers_gpu(resources: Mapping[str, float]) -> bool:
    """True when a worker with these Dask resources is a GPU worker."""
    return float(resources.get(GPU_RESOURCE, 0) or 0) > 0
