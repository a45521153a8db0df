"""Measuring trackflow: ``trackflow bench``'s sweep (:mod:`~trackflow.bench.sweep`), its headline
figures (:mod:`~trackflow.bench.headline`), the size sweep, the node-contention probe, where it
ran (:mod:`~trackflow.bench.machine`) and the plots.

Knows Dask (through :mod:`trackflow.run` and :mod:`trackflow.cluster`); writes the bench.json
that :mod:`trackflow.estimation` reads. Nothing imports it but the CLI and ``benchmarks/``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BenchConfig", "run_bench", "write_plots"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from trackflow.bench import sweep

    return getattr(sweep, name)
