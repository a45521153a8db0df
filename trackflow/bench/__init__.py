"""Measuring trackflow: ``trackflow bench``'s sweep (:mod:`~trackflow.bench.sweep`), its headline
figures (:mod:`~trackflow.bench.headline`), the size sweep, the node-contention probe, where it
ran (:mod:`~trackflow.bench.machine`) and the plots.

Knows Dask (through :mod:`trackflow.run` and :mod:`trackflow.cluster`); writes the bench.json
that :mod:`trackflow.estimation` reads. Nothing imports it but the CLI and ``benchmarks/``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BenchConfig": "bench_config",
    "run_bench": "sweep",
    "write_plots": "plots",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
