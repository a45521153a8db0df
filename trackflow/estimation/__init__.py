"""Resource estimation from a bench.json: nodes, cores / GPUs, memory and network for a target
event rate and latency budget (:mod:`~trackflow.estimation.sizing`), with the queueing formulas
(:mod:`~trackflow.estimation.queueing`), time and memory against event size
(:mod:`~trackflow.estimation.size_model`), node contention, hardware node types
(:mod:`~trackflow.estimation.node_types`) and the parsers of its options (``1kHz``, ``512GB``,
``25Gbit/s``, ``200ms``: :mod:`~trackflow.estimation.option_parsers`).

Numbers only: numpy, scipy and matplotlib for its one plot; it never imports Dask, torch, the
pipeline, runs or benchmarks (``tests/test_layering.py`` checks).
"""

from __future__ import annotations

from typing import Any

__all__ = ["EstimateResult", "NodeSpec", "SizeScaling", "estimate", "predict_batch_workflow"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from trackflow.estimation import sizing

    return getattr(sizing, name)
