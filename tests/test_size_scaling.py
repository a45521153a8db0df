"""Size scaling: the per-stage edge-based model recovers known parameters from synthetic data,
falls back to the power law when it cannot be fitted, and survives bench.json round trips.

Every expected value is computed here from the synthetic parameters, not copied from the code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from trackflow.estimation.size_model import PowerLaw, SizeScaling, StageCost

SIZES = [1000, 1414, 2000, 2828, 4000]
# event-to-event spread of the counts at one size, geometric mean 1 (so the log-log fit of the
# power law recovers its coefficient exactly)
SPREAD = [0.9, 1.0, 1 / 0.9]
EDGES_GRAPH = (2e-4, 2.0)  # edges_graph = 2e-4 * h**2
FILTER_KEEPS, GNN_KEEPS = 0.5, 0.2  # edges_filter, edges_gnn as fractions of edges_graph
OTHER_S = 5e-4
#: stage -> (a, b, c): seconds = a + b*h + c*count
STAGES = {
    "load": (1e-3, 1e-6, 0.0),
    "embedding": (0.0, 2e-6, 0.0),
    "graph_building": (2e-3, 1e-6, 5e-6),
    "filter": (0.0, 0.0, 3e-6),
    "gnn": (1e-3, 2e-6, 4e-6),
    "labelling": (0.0, 1e-7, 1e-6),
}
COUNT_OF = {
    "graph_building": "edges_graph",
    "filter": "edges_graph",
    "gnn": "edges_filter",
    "labelling": "edges_gnn",
}


def counts_at(hits: float, spread: float = 1.0) -> dict[str, float]:
    graph = EDGES_GRAPH[0] * hits ** EDGES_GRAPH[1] * spread
    return {"edges_graph": graph, "edges_filter": FILTER_KEEPS * graph, "edges_gnn": GNN_KEEPS * graph}


def true_seconds(hits: float, counts: dict[str, float]) -> float:
    total = OTHER_S
    for stage, (a, b, c) in STAGES.items():
        total += a + b * hits + c * counts.get(COUNT_OF.get(stage, ""), 0.0)
    return total


def synthetic_points(noise: float = 0.0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    points = []
    for hits in SIZES:
        for spread in SPREAD:
            counts = counts_at(hits, spread)
            stages = {}
            for stage, (a, b, c) in STAGES.items():
                seconds = a + b * hits + c * counts.get(COUNT_OF.get(stage, ""), 0.0)
                stages[stage] = seconds * (1 + noise * rng.standard_normal())
            points.append(
                {
                    "hits": hits,
                    "seconds": sum(stages.values()) + OTHER_S,
                    "stages": stages,
                    "counts": counts,
                }
            )
    return points


def test_power_law_recovers_count_exponent() -> None:
    hits = np.repeat(SIZES, len(SPREAD)).astype(float)
    counts = np.array([counts_at(h, s)["edges_graph"] for h in SIZES for s in SPREAD])
    law = PowerLaw.fit("edges_graph", hits, counts)
    assert law is not None
    assert law.exponent == pytest.approx(EDGES_GRAPH[1], rel=1e-9)
    assert law.coefficient == pytest.approx(EDGES_GRAPH[0], rel=1e-9)
    assert law(10_000) == pytest.approx(EDGES_GRAPH[0] * 1e8)


def test_power_law_needs_two_sizes_with_counts() -> None:
    # edges only at one size (the smaller events had none): the exponent is not measured
    assert PowerLaw.fit("edges_gnn", np.array([100, 200, 200]), np.array([0, 5, 7])) is None


def test_stage_cost_recovers_known_coefficients() -> None:
    hits = np.repeat(SIZES, len(SPREAD)).astype(float)
    edges = np.array([counts_at(h, s)["edges_filter"] for h in SIZES for s in SPREAD])
    a, b, c = STAGES["gnn"]
    stage = StageCost.fit("gnn", hits, a + b * hits + c * edges, edges, "edges_filter")
    assert (stage.a, stage.b, stage.c) == pytest.approx((a, b, c), rel=1e-6)
    assert stage.count == "edges_filter"


def test_stage_cost_drops_the_count_with_two_sizes() -> None:
    # 2 sizes cannot pin 3 coefficients: a + b*h only, exact on a line
    hits = np.array([1000.0, 1000.0, 2000.0, 2000.0])
    stage = StageCost.fit("filter", hits, 0.01 + 1e-5 * hits, hits**2, "edges_graph")
    assert stage.c == 0.0 and stage.count is None
    assert (stage.a, stage.b) == pytest.approx((0.01, 1e-5), rel=1e-6)


def test_per_stage_model_recovers_parameters_and_extrapolates_exactly() -> None:
    points = synthetic_points()
    scaling = SizeScaling.fit_points(points)
    assert scaling.model == "per-stage"
    by_stage = {s.stage: s for s in scaling.stages}
    assert set(by_stage) == set(STAGES)
    for stage, (a, b, c) in STAGES.items():
        fitted = by_stage[stage]
        assert fitted.a == pytest.approx(a, rel=1e-6, abs=1e-12), stage
        assert fitted.b == pytest.approx(b, rel=1e-6, abs=1e-15), stage
        assert fitted.c == pytest.approx(c, rel=1e-6, abs=1e-15), stage
    assert scaling.other_s == pytest.approx(OTHER_S, rel=1e-6)
    # doubling beyond the largest size: the truth with the power-law counts
    for hits in (8000, 16000):
        assert scaling.seconds(hits) == pytest.approx(true_seconds(hits, counts_at(hits)), rel=1e-6)
    assert scaling.ratio(8000, np.array([4000.0]))[0] == pytest.approx(
        true_seconds(8000, counts_at(8000)) / true_seconds(4000, counts_at(4000)), rel=1e-6
    )


def test_per_stage_model_tolerates_noise() -> None:
    scaling = SizeScaling.fit_points(synthetic_points(noise=0.05, seed=1))
    truth = true_seconds(8000, counts_at(8000))
    assert scaling.seconds(8000) == pytest.approx(truth, rel=0.15)


def test_falls_back_to_the_power_law() -> None:
    points = synthetic_points()
    without_counts = [{k: v for k, v in p.items() if k != "counts"} for p in points]
    assert SizeScaling.fit_points(without_counts).model == "power-law"
    two_sizes = [p for p in points if p["hits"] in (1000, 4000)]
    assert SizeScaling.fit_points(two_sizes).model == "power-law"


def test_round_trip_through_json_and_old_bench_files() -> None:
    scaling = SizeScaling.fit_points(synthetic_points())
    again = SizeScaling.from_dict(json.loads(json.dumps(scaling.to_dict())))
    assert again == scaling
    assert again.seconds(9000) == pytest.approx(scaling.seconds(9000))
    # a bench.json written before the per-stage model: a, b, k only
    old = SizeScaling.from_dict({"a": 0.1, "b": 1e-3, "k": 1.0, "points": 3, "hits_range": [1, 10]})
    assert old.model == "power-law"
    assert old.seconds(100) == pytest.approx(0.1 + 1e-3 * 100)
    assert "h^1.000" in old.describe() and "edges_graph" in scaling.describe()
