"""Time per event against its size (hits), to move measured service times to bigger events.

Two models, both serialised in ``bench.json`` under ``size_scaling``:

* **per stage** (used whenever the size sweep recorded per-stage times and counts): the time of
  each pipeline stage is ``a + b·h + c·n(h)`` (s), where ``h`` is the number of hits and ``n`` the
  count of the items that stage works on (:data:`STAGE_COUNTS`: the graph edges for graph
  building and the filter, the filtered edges for the GNN, the kept edges for labelling; none for
  load and embedding, which are per-hit work). ``a, b, c >= 0`` come from a non-negative least
  squares on relative residuals, against the *measured* count of every event. Each count is then
  a power law of the hits, ``n(h) = α·h^β``, fitted in log-log to the same events: counts are
  exact, not noisy, and physically the edges grow with hit density (β ≈ 2 when the events are
  random subsamples of one detector: the pairs closer than a radius grow as the square of the
  density). The event time is the sum over stages plus the mean time outside the stages.
* **power law** (fallback for benches without per-stage data, and the memory fit):
  ``a + b·h^k`` on relative residuals, ``0.3 <= k <= 3``.

Why per stage: a single 3-parameter curve through 3 noisy sizes interpolates the noise exactly
and extrapolates it; the per-stage terms have physical shapes and the count exponents come from
exact counts. Limits: the graph building's k-d tree search in the 12-dimensional embedding space
grows irregularly with size (its cost jumps when the tree gets deeper), which no smooth model
follows; the result is printed as an assumption of every estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trackflow.errors import TrackflowError

#: the count each stage's work grows with, beyond the hits (None: per-hit work only)
STAGE_COUNTS: dict[str, str | None] = {
    "load": None,
    "embedding": None,
    "graph_building": "edges_graph",  # candidate pairs of the radius search ≈ the edges it keeps
    "filter": "edges_graph",  # the filter MLP scores every graph edge
    "gnn": "edges_filter",  # message passing over the edges the filter kept
    "labelling": "edges_gnn",  # connected components over the edges the GNN kept
}


@dataclass(frozen=True)
class PowerLaw:
    """``count(h) = coefficient·h^exponent`` (a count against hits per event)."""

    name: str
    coefficient: float
    exponent: float

    def __call__(self, hits: float | np.ndarray) -> np.ndarray:
        return self.coefficient * np.power(np.asarray(hits, dtype=np.float64), self.exponent)

    @classmethod
    def fit(cls, name: str, hits: np.ndarray, counts: np.ndarray) -> PowerLaw | None:
        """Least squares in log-log on the events with a positive count; None with fewer than
        two distinct sizes (the exponent is then not measured)."""
        hits = np.asarray(hits, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        keep = (hits > 0) & (counts > 0)
        if np.unique(hits[keep]).size < 2:
            return None
        exponent, log_coefficient = np.polyfit(np.log(hits[keep]), np.log(counts[keep]), 1)
        return cls(name, float(np.exp(log_coefficient)), float(exponent))


@dataclass(frozen=True)
class StageCost:
    """Seconds of one stage for an event of ``h`` hits: ``a + b·h + c·count(h)``."""

    stage: str
    a: float
    b: float
    c: float = 0.0
    count: str | None = None

    def seconds(self, hits: float | np.ndarray, counts: Mapping[str, PowerLaw]) -> np.ndarray:
        hits = np.asarray(hits, dtype=np.float64)
        out = self.a + self.b * hits
        if self.count is not None and self.c:
            out = out + self.c * counts[self.count](hits)
        return out

    @classmethod
    def fit(
        cls, stage: str, hits: np.ndarray, seconds: np.ndarray, counts: np.ndarray | None, count: str | None
    ) -> StageCost:
        """Non-negative least squares of ``seconds`` on ``[1, hits, counts]``, residuals relative
        to each measurement (the sizes span decades). Without a count, or with fewer than 3
        distinct sizes (3 coefficients would then fit noise), the count term is left out."""
        from scipy.optimize import nnls

        hits = np.asarray(hits, dtype=np.float64)
        seconds = np.asarray(seconds, dtype=np.float64)
        keep = seconds > 0
        with_count = counts is not None and count is not None and np.unique(hits[keep]).size >= 3
        columns = [np.ones_like(hits), hits] + ([np.asarray(counts, np.float64)] if with_count else [])
        design = np.stack(columns, axis=1)[keep] / seconds[keep, None]
        if design.shape[0] == 0:
            return cls(stage, 0.0, 0.0)
        coef, _ = nnls(design, np.ones(design.shape[0]))
        c = float(coef[2]) if with_count else 0.0
        return cls(stage, float(coef[0]), float(coef[1]), c, count if c else None)


@dataclass(frozen=True)
class SizeScaling:
    """Seconds per event against hits: the per-stage model when ``stages`` is set, else
    ``a + b·h^k`` (module docstring). ``points``: events fitted; ``hits_range``: their sizes."""

    a: float
    b: float
    k: float
    points: int = 0
    hits_range: tuple[int, int] = (0, 0)
    stages: tuple[StageCost, ...] = ()
    counts: tuple[PowerLaw, ...] = ()
    other_s: float = 0.0  # mean time per event outside the stages (s)

    @property
    def model(self) -> str:
        return "per-stage" if self.stages else "power-law"

    def seconds(self, hits: float | np.ndarray) -> float | np.ndarray:
        if self.stages:
            counts = {c.name: c for c in self.counts}
            total = sum(stage.seconds(hits, counts) for stage in self.stages)
            return total + self.other_s
        return self.a + self.b * np.power(np.asarray(hits, dtype=np.float64), self.k)

    def ratio(self, target_hits: float, hits: np.ndarray) -> np.ndarray:
        """``t(target)/t(h)`` for each ``h``: the factor that moves a sample to the target size."""
        factor: np.ndarray = np.asarray(self.seconds(target_hits)) / np.asarray(self.seconds(hits))
        return factor

    def describe(self) -> str:
        """One line for the assumptions of an estimate."""
        lo, hi = self.hits_range
        where = f"fit on {self.points} events, {lo:,}-{hi:,} hits"
        if not self.stages:
            return f"t(h) = {self.a:.3g} + {self.b:.3g}*h^{self.k:.3f} s ({where})"
        laws = ", ".join(f"{c.name} = {c.coefficient:.3g}*h^{c.exponent:.2f}" for c in self.counts)
        return f"t(h) = sum over stages of a + b*h + c*edges(h) s, with {laws} ({where})"

    @classmethod
    def fit(cls, hits: np.ndarray, seconds: np.ndarray) -> SizeScaling:
        """``a + b·h^k``: least squares on relative residuals (sizes span decades), a, b >= 0,
        0.3 <= k <= 3. With fewer than 3 distinct sizes the exponent is not constrained: k = 1."""
        from scipy.optimize import curve_fit

        hits = np.asarray(hits, dtype=np.float64)
        seconds = np.asarray(seconds, dtype=np.float64)
        keep = (hits > 0) & (seconds > 0) & np.isfinite(seconds)
        hits, seconds = hits[keep], seconds[keep]
        if hits.size == 0:
            raise TrackflowError("size scaling: no (hits, seconds) measurements to fit")
        span = (int(hits.min()), int(hits.max()))
        if np.unique(hits).size < 3:
            # weighted least squares for a + b·h with relative weights
            design = np.stack([np.ones_like(hits), hits], axis=1) / seconds[:, None]
            coef, *_ = np.linalg.lstsq(design, np.ones_like(hits), rcond=None)
            a, b = (max(float(c), 0.0) for c in coef)
            if b == 0.0:
                b = float(np.mean(seconds) / np.mean(hits))
            return cls(a, b, 1.0, int(hits.size), span)

        def model(h: np.ndarray, a: float, b: float, k: float) -> np.ndarray:
            seconds: np.ndarray = a + b * np.power(h, k)
            return seconds

        scale = float(np.median(seconds / hits))
        (a, b, k), _ = curve_fit(
            model,
            hits,
            seconds,
            p0=(float(seconds.min()) * 0.1, scale, 1.0),
            sigma=seconds,
            bounds=([0.0, 0.0, 0.3], [np.inf, np.inf, 3.0]),
            maxfev=20_000,
        )
        return cls(float(a), float(b), float(k), int(hits.size), span)

    @classmethod
    def fit_points(cls, points: Sequence[Mapping[str, Any]]) -> SizeScaling:
        """The per-stage model from size-sweep points (``hits``, ``seconds``, ``stages`` {stage:
        s}, ``counts`` {count: n}), with the power law alongside; the power law alone when the
        points lack stages or counts or cover fewer than 3 sizes."""
        hits = np.array([p["hits"] for p in points], dtype=np.float64)
        seconds = np.array([p["seconds"] for p in points], dtype=np.float64)
        power = cls.fit(hits, seconds)
        detailed = all(p.get("stages") and p.get("counts") for p in points)
        if not detailed or np.unique(hits).size < 3:
            return power
        stage_names = sorted({s for p in points for s in p["stages"]}, key=_stage_order)
        laws: dict[str, PowerLaw] = {}
        for name in {c for c in (STAGE_COUNTS.get(s) for s in stage_names) if c is not None}:
            measured = np.array([p["counts"].get(name, 0) for p in points], dtype=np.float64)
            law = PowerLaw.fit(name, hits, measured)
            if law is not None:
                laws[name] = law
        stages = []
        for stage in stage_names:
            count = STAGE_COUNTS.get(stage)
            if count is not None and count not in laws:
                count = None  # its count could not be fitted: the stage is linear in hits
            stage_counts = (
                None
                if count is None
                else np.array([p["counts"].get(count, 0) for p in points], dtype=np.float64)
            )
            stage_s = np.array([p["stages"].get(stage, 0.0) for p in points], dtype=np.float64)
            stages.append(StageCost.fit(stage, hits, stage_s, stage_counts, count))
        inside = np.array([sum(p["stages"].values()) for p in points], dtype=np.float64)
        other = max(float(np.mean(seconds - inside)), 0.0)
        used = {s.count for s in stages if s.count is not None}
        return cls(
            power.a,
            power.b,
            power.k,
            power.points,
            power.hits_range,
            tuple(stages),
            tuple(laws[name] for name in sorted(used)),
            other,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "a": self.a,
            "b": self.b,
            "k": self.k,
            "points": self.points,
            "hits_range": list(self.hits_range),
            "model": self.model,
            "power_law": "seconds = a + b * hits**k",
        }
        if self.stages:
            out["stages"] = [asdict(s) for s in self.stages]
            out["counts"] = [asdict(c) for c in self.counts]
            out["other_s"] = self.other_s
            out["stage_model"] = (
                "seconds = other_s + sum(a + b*hits + c*count(hits)); count = coefficient*hits**exponent"
            )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SizeScaling:
        """Reads either model: without ``stages`` (no size sweep of 3 sizes) it is the power law."""
        return cls(
            float(data["a"]),
            float(data["b"]),
            float(data["k"]),
            int(data.get("points", 0)),
            _hits_range(data),
            tuple(StageCost(**s) for s in data.get("stages") or ()),
            tuple(PowerLaw(**c) for c in data.get("counts") or ()),
            float(data.get("other_s", 0.0)),
        )


def _hits_range(data: Mapping[str, Any]) -> tuple[int, int]:
    """The (smallest, largest) hits a fit saw; (0, 0) when the record does not say."""
    low, high = data.get("hits_range") or (0, 0)
    return int(low), int(high)


def _stage_order(stage: str) -> int:
    order = list(STAGE_COUNTS)
    return order.index(stage) if stage in order else len(order)


@dataclass(frozen=True)
class MemoryScaling:
    """Working memory of one event against hits, ``bytes = a + b·h^k``: the peak memory above
    the resident set while the event runs (bench.json ``memory.working_bytes_fit``). Fitted as
    :meth:`SizeScaling.fit` fits seconds (relative residuals, 0.3 <= k <= 3)."""

    a: float
    b: float
    k: float
    points: int = 0
    hits_range: tuple[int, int] = (0, 0)

    def bytes(self, hits: float | np.ndarray) -> float | np.ndarray:
        """Working bytes of an event of ``hits`` hits."""
        return self.a + self.b * np.power(np.asarray(hits, dtype=np.float64), self.k)

    @classmethod
    def fit(cls, hits: np.ndarray, working_bytes: np.ndarray) -> MemoryScaling:
        law = SizeScaling.fit(hits, working_bytes)
        return cls(law.a, law.b, law.k, law.points, law.hits_range)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "k": self.k,
            "points": self.points,
            "hits_range": list(self.hits_range),
            "model": "power-law",
            "power_law": "bytes = a + b * hits**k",
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryScaling:
        return cls(
            float(data["a"]),
            float(data["b"]),
            float(data["k"]),
            int(data.get("points", 0)),
            _hits_range(data),
        )
