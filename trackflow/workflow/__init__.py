"""Everything Dask: batching, executors (fused / staged / direct), the per-worker pipeline plugin,
clusters, outputs, reports, benchmarks and estimates.

Names are imported on first use, so ``import trackflow.workflow.clusters`` does not load torch.
The entry point is ``from trackflow.workflow.reconstruct import ReconstructConfig, reconstruct``
(the function is not re-exported here: the package attribute ``reconstruct`` is the module).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Batch": "batching",
    "make_batches": "batching",
    "BatchResult": "executors",
    "DirectExecutor": "executors",
    "EventFailure": "executors",
    "FusedExecutor": "executors",
    "StagedExecutor": "executors",
    "PipelinePlugin": "plugin",
    "RunOutputs": "outputs",
    "RunReport": "report",
    "EXIT_FAILED_EVENTS": "report",
    "EXIT_OK": "report",
    "ReconstructConfig": "reconstruct",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
