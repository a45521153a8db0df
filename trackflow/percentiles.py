"""The one percentile summary of a set of times (s) or sizes, as report.json, bench.json,
stream.json and estimate.json write it."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["QUANTILES", "summary"]

#: the percentiles every summary holds, keyed ``p50``, ``p95``, ``p99``
QUANTILES = (50, 95, 99)


def summary(values: Iterable[float | None]) -> dict[str, float | None]:
    """``p50``, ``p95``, ``p99``, ``mean`` and ``max`` of the finite ``values``.

    The keys are always there: with no finite value each is None (``null`` in JSON), so a reader
    never has to test for a missing summary. None, NaN and infinite values are left out.
    """
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return {**{f"p{q}": None for q in QUANTILES}, "mean": None, "max": None}
    quantiles = np.percentile(array, QUANTILES)
    out: dict[str, float | None] = {f"p{q}": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)}
    out["mean"] = float(array.mean())
    out["max"] = float(array.max())
    return out
