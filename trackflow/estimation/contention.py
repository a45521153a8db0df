"""Node contention as the estimate reads it: how much slower one event runs when every core of
the node is busy (measured by :mod:`trackflow.bench.contention`, recorded in bench.json).

How the estimate uses it (:meth:`NodeContention.at`): the slowdown is taken to grow linearly
with the number of busy cores, from 1 with one busy core to the measured value with all N;
beyond N it stays at the measured value. Busy cores = workers × threads per worker. For a node
type other than the bench machine, the fraction of its cores that are busy is mapped onto the
bench machine's cores (a full node gets the full measured slowdown): the bench machine's
contention stands in for the target node's, which is printed as an assumption.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeContention:
    """Per-event time with ``cores`` single-threaded processes at once ÷ with one alone."""

    cores: int
    slowdown: float
    alone_s: float = 0.0  # mean in-task time per event, one process (s)
    together_s: float = 0.0  # the same with ``cores`` processes at once (s)
    events: dict[str, int] = field(default_factory=dict)  # events timed: {"alone": n, "together": n}
    window_s: float = 0.0

    def at(self, busy_cores: float) -> float:
        """Slowdown with ``busy_cores`` of the bench machine's cores busy (linear in between)."""
        if self.cores <= 1 or busy_cores <= 1:
            return 1.0
        busy = min(float(busy_cores), float(self.cores))
        return 1.0 + (self.slowdown - 1.0) * (busy - 1.0) / (self.cores - 1.0)

    def at_fraction(self, busy_fraction: float) -> float:
        """Slowdown with this fraction of a node's cores busy, mapped onto the bench machine."""
        return self.at(max(0.0, min(busy_fraction, 1.0)) * self.cores)

    def factor(self, busy_cores: float, measured_busy_cores: float = 1.0) -> float:
        """Multiplier for service times measured with ``measured_busy_cores`` busy (their own
        contention already inside) to move them to ``busy_cores`` busy."""
        return self.at(busy_cores) / self.at(measured_busy_cores)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["what"] = (
            "in-task seconds per event with `cores` single-threaded pipeline processes running "
            "at once / with one process alone (no Dask); same events, timed in the same window"
        )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> NodeContention | None:
        if not data:
            return None
        return cls(
            int(data["cores"]),
            float(data["slowdown"]),
            float(data.get("alone_s", 0.0)),
            float(data.get("together_s", 0.0)),
            dict(data.get("events") or {}),
            float(data.get("window_s", 0.0)),
        )


def slowdown_from_times(
    alone: Mapping[Any, Sequence[float]], together: Mapping[Any, Sequence[float]]
) -> float:
    """Σ over events of mean time together ÷ Σ of mean time alone, over events timed in both
    (each event weighs once however often it ran, so uneven loops do not bias the ratio)."""
    common = [e for e in alone if alone[e] and together.get(e)]
    if not common:
        raise ValueError("no event was timed both alone and together")
    busy = sum(statistics.fmean(together[e]) for e in common)
    return busy / sum(statistics.fmean(alone[e]) for e in common)
