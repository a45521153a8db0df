"""Running the pipeline over many events on Dask: batching, the record dataclasses, the three
executors (fused / staged / direct) behind one contract, the per-worker pipeline plugin, outputs
(atomic, resumable), the run report, progress, ``reconstruct`` and parallel simulation.

Knows Dask, events and the pipeline; gets its workers from :mod:`trackflow.cluster`; never
imports :mod:`trackflow.bench` or the CLI. Names are imported on first use.
The entry point is ``from trackflow.run.reconstruct import ReconstructConfig, reconstruct``
(the function is not re-exported here: the package attribute ``reconstruct`` is the module).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Batch": "batching",
    "make_batches": "batching",
    "BatchResult": "records",
    "EventFailure": "records",
    "EventRecord": "records",
    "TaskRecord": "records",
    "DirectExecutor": "executors",
    "Executor": "executors",
    "FusedExecutor": "dask_executors",
    "MODES": "executors",
    "StagedExecutor": "dask_executors",
    "make_executor": "executors",
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
