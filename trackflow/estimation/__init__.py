"""Resource estimation from a bench.json: nodes, cores / GPUs, memory and network for a target
event rate and latency budget.

One module per concern: the typed bench.json (:mod:`~trackflow.estimation.bench_file`) and what
an estimate reads from it (:mod:`~trackflow.estimation.bench_inputs`); sizing each node type
(:mod:`~trackflow.estimation.sizing`, the public :func:`estimate`) and its result and table
(:mod:`~trackflow.estimation.estimate_result`); servers and latency of a farm under load
(:mod:`~trackflow.estimation.latency`) on the queueing formulas and simulations
(:mod:`~trackflow.estimation.queueing`); time and memory against event size
(:mod:`~trackflow.estimation.size_model`); node contention; hardware node types
(:mod:`~trackflow.estimation.node_types`); the parsers of its options (``1kHz``, ``512GB``,
``25Gbit/s``, ``200ms``: :mod:`~trackflow.estimation.option_parsers`); the online service's
latency against rate (:mod:`~trackflow.estimation.online`); the batch workflow's predicted
throughput (:mod:`~trackflow.estimation.batch_prediction`); and one Dask scheduler's load
(:mod:`~trackflow.estimation.scheduler`: CPU per task, per byte and per heartbeat, measured by
``benchmarks/scheduler_limits.py``) with the K clusters a farm is split into when one scheduler
is too busy (:mod:`~trackflow.estimation.scheduler_plan`).

Numbers only: numpy, scipy and matplotlib for its one plot; it never imports Dask, torch, the
pipeline, runs or benchmarks (``tests/test_layering.py`` checks).
"""

from __future__ import annotations

import importlib
from typing import Any

# imported on first use: numbers only, but scipy and matplotlib are not free to import
_EXPORTS = {
    "BenchFile": "bench_file",
    "read_bench": "bench_file",
    "EstimateResult": "estimate_result",
    "NodeSpec": "node_types",
    "SizeScaling": "size_model",
    "estimate": "sizing",
    "predict_batch_workflow": "batch_prediction",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
