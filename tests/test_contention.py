"""Node contention: the interpolation between 1 and N busy cores, the event-by-event slowdown,
and one real (short) probe with spawned processes on small TrackML events."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from trackflow.bench.contention import measure_node_contention
from trackflow.estimation.contention import NodeContention, slowdown_from_times
from trackflow.events import list_events
from trackflow.events.subsample import subsample_event
from trackflow.pipeline.pipeline import Pipeline


def test_slowdown_grows_linearly_from_one_core_to_all() -> None:
    node = NodeContention(cores=4, slowdown=1.3)
    assert node.at(1) == 1.0
    assert node.at(4) == pytest.approx(1.3)
    assert node.at(2.5) == pytest.approx(1 + 0.3 * 1.5 / 3)
    assert node.at(16) == pytest.approx(1.3)  # beyond the measured cores: the measured value
    assert node.at(0.5) == 1.0
    assert NodeContention(cores=1, slowdown=1.0).at(8) == 1.0


def test_busy_fraction_maps_onto_the_bench_cores() -> None:
    node = NodeContention(cores=4, slowdown=1.3)
    assert node.at_fraction(1.0) == pytest.approx(1.3)  # a full node of any size
    assert node.at_fraction(0.5) == pytest.approx(node.at(2))
    assert node.at_fraction(2.0) == pytest.approx(1.3)


def test_factor_removes_the_contention_already_measured() -> None:
    node = NodeContention(cores=4, slowdown=1.3)
    # samples measured with 2 busy cores already carry at(2); moved to 4 busy cores
    assert node.factor(busy_cores=4, measured_busy_cores=2) == pytest.approx(1.3 / node.at(2))
    assert node.factor(busy_cores=2, measured_busy_cores=2) == pytest.approx(1.0)
    assert node.factor(busy_cores=4) == pytest.approx(1.3)


def test_slowdown_compares_event_by_event() -> None:
    # event 1 ran twice alone and once together, event 2 the other way round: each event
    # weighs once, so the ratio is (1.5 + 3) / (1 + 2) whatever the repetitions
    alone = {1: [1.0, 1.0], 2: [2.0]}
    together = {1: [1.5], 2: [2.5, 3.5], 3: [9.0]}  # event 3 never ran alone: left out
    assert slowdown_from_times(alone, together) == pytest.approx(4.5 / 3.0)
    with pytest.raises(ValueError, match="both"):
        slowdown_from_times({1: [1.0]}, {2: [1.0]})


def test_round_trip() -> None:
    node = NodeContention(
        cores=2,
        slowdown=1.17,
        alone_s=0.3,
        together_s=0.35,
        events={"alone": 30, "together": 52},
        window_s=8.0,
    )
    assert NodeContention.from_dict(json.loads(json.dumps(node.to_dict()))) == node
    assert NodeContention.from_dict(None) is None


def test_unpicklable_loader_is_refused_before_any_process_starts(tmp_path: Path) -> None:
    def local_loader(**_: object) -> None:  # a local function cannot travel to a spawned process
        return None

    with pytest.raises((AttributeError, pickle.PicklingError), match="pickle"):
        measure_node_contention([], None, "cpu", loader=local_loader, processes=2, window_s=0.1)


@pytest.mark.slow
def test_probe_runs_the_pipeline_in_parallel_processes(trackml_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    refs = [subsample_event(ref, 300, rng, tmp_path) for ref in list_events(trackml_dir)[:2]]
    node = measure_node_contention(refs, None, "cpu", loader=Pipeline.random_init, processes=2, window_s=1.0)
    assert node.cores == 2
    # every process timed events in its window; the slowdown is their ratio (no timing asserted)
    assert node.events["alone"] >= 1 and node.events["together"] >= 2
    assert node.slowdown == pytest.approx(node.together_s / node.alone_s, rel=0.5)
    assert node.slowdown > 0
