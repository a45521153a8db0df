"""The Dask scheduler's model and what the estimate charges it (issue 32): Dask's adaptive
heartbeat interval reproduced exactly, the utilisation's arithmetic, K clusters that each stay
under the threshold (and K - 1 that would not), the batch-size sensitivity, the settings read
from trackflow.yaml and overridable, and the estimate's table, assumptions and estimate.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from distributed.scheduler import heartbeat_interval
from test_estimates import bench_json  # noqa: F401  (the synthetic bench fixture)

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.estimation import sizing
from trackflow.estimation.node_types import NodeSpec
from trackflow.estimation.scheduler import (
    MAX_HEARTBEATS_PER_S,
    SchedulerModel,
    heartbeat_interval_s,
    heartbeats_per_s,
)
from trackflow.estimation.scheduler_plan import auto_events_per_task, plan_schedulers

MODEL = SchedulerModel(
    cpu_per_batch_s=4e-3,
    cpu_per_chained_task_s=1e-3,
    cpu_per_byte_s=1e-9,
    cpu_per_heartbeat_s=2e-4,
    cpu_per_worker_s=1e-6,
    idle_cpu=0.02,
    active_cpu=0.1,
    max_utilisation=1.0,
)


@pytest.mark.parametrize("workers", [0, 1, 10, 11, 49, 50, 199, 200, 201, 1000, 18_777, 100_000])
def test_heartbeat_interval_is_dasks(workers: int) -> None:
    # the estimation room imports no Dask: this guards the copy against the installed version
    assert heartbeat_interval_s(workers) == pytest.approx(heartbeat_interval(workers))


def test_heartbeats_are_capped_at_200_per_second() -> None:
    rates = [heartbeats_per_s(n) for n in (10, 100, 1000, 10_000, 1_000_000)]
    assert rates == sorted(rates)
    assert all(r < MAX_HEARTBEATS_PER_S for r in rates)
    assert rates[-1] == pytest.approx(MAX_HEARTBEATS_PER_S, rel=1e-3)
    assert heartbeats_per_s(0) == 0.0


def test_utilisation_is_tasks_plus_background() -> None:
    load = MODEL.load(batch_rate=100.0, tasks_per_batch=7, bytes_per_batch=1e6, workers=1000)
    per_batch = 4e-3 + 6 * 1e-3 + 1e6 * 1e-9
    background = 0.02 + heartbeats_per_s(1000) * 2e-4 + 1000 * 1e-6
    assert load.tasks == pytest.approx(0.1 + 100 * per_batch)
    assert load.background == pytest.approx(background)
    assert load.utilisation == pytest.approx(0.1 + 100 * per_batch + background)
    assert load.max_batch_rate == pytest.approx((1.0 - background - 0.1) / per_batch)
    # no task flowing: no active event loop, the background only
    assert MODEL.load(0.0, 1, 0.0, 1000).utilisation == pytest.approx(background)


def test_the_max_rate_fills_the_scheduler_exactly() -> None:
    rate = MODEL.max_batch_rate(MODEL.cpu_per_batch(1, 0.0), workers=50)
    assert MODEL.load(rate, 1, 0.0, 50).utilisation == pytest.approx(MODEL.max_utilisation)


def test_clusters_needed_is_the_smallest_k_under_the_threshold() -> None:
    rate, workers, threshold = 1000.0, 18_777, 0.5
    clusters, each = MODEL.clusters_needed(rate, 1, 4.3e6, workers, threshold)
    assert each.utilisation <= threshold
    fewer = MODEL.load(rate / (clusters - 1), 1, 4.3e6, math.ceil(workers / (clusters - 1)))
    assert fewer.utilisation > threshold
    assert clusters > 1


def test_one_cluster_when_the_scheduler_is_idle_enough() -> None:
    clusters, each = MODEL.clusters_needed(1.0, 1, 0.0, 4, 0.5)
    assert clusters == 1
    assert each.utilisation < 0.2  # idle, 4 heartbeating workers, the active loop and 1 task/s


def test_a_bad_coefficient_or_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="cpu_per_batch_s"):
        SchedulerModel(cpu_per_batch_s=0.0)
    with pytest.raises(ConfigError, match="idle_cpu"):
        SchedulerModel(idle_cpu=-1.0)
    with pytest.raises(ConfigError, match="threshold"):
        MODEL.clusters_needed(1.0, 1, 0.0, 4, 1.5)


def test_coefficients_come_from_the_settings_and_are_overridable() -> None:
    shipped = SchedulerModel.from_config()
    assert shipped.cpu_per_batch_s == config.get("estimate.scheduler.cpu_per_batch_s")
    with config.set(**{"estimate.scheduler.cpu_per_batch_s": 2 * shipped.cpu_per_batch_s}):
        assert SchedulerModel.from_config().cpu_per_batch_s == 2 * shipped.cpu_per_batch_s


def test_bigger_batches_mean_fewer_tasks_and_more_latency() -> None:
    plan = plan_schedulers("cpu", 1000.0, 18_777, 4.3e6, 15.0, 100_000, model=MODEL, batch_sizes=[1, 2, 4, 8])
    sizes = [c.events_per_task for c in plan.choices]
    assert sizes == sorted(sizes) and {1, 2, 4, 8} <= set(sizes)
    loads = [c.utilisation_one for c in plan.choices]
    assert loads == sorted(loads, reverse=True)  # per-task cost is amortised over more events
    clusters = [c.clusters for c in plan.choices]
    assert clusters == sorted(clusters, reverse=True)
    added = [c.added_latency_last_s for c in plan.choices]
    assert added[0] == 0.0 and added == sorted(added)
    assert plan.choices[sizes.index(2)].added_latency_last_s == pytest.approx(15.0 + 1e-3)


def test_auto_batch_size_follows_the_workflow_setting() -> None:
    per_batch = int(config.get("workflow.auto_batch.hits_per_batch"))
    assert auto_events_per_task(per_batch // 2) == 2
    assert auto_events_per_task(10 * per_batch) == 1


def test_the_estimate_reports_the_scheduler_and_splits_the_farm(
    bench_json: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    node = NodeSpec("cpu", cores=64, memory_bytes=512e9)
    # a scheduler that is busy for 10 ms a task: 1 kHz needs 10 cores of scheduler, K >= 20 at 50 %
    with config.set(**{"estimate.scheduler.cpu_per_batch_s": 10e-3}):
        result = sizing.estimate(bench_json, 1000.0, nodes=[node], out_dir=tmp_path)
    (row,) = result.rows
    assert row.scheduler_utilisation is not None and row.scheduler_utilisation > 10.0
    assert row.clusters is not None and row.clusters >= 20
    (plan,) = result.schedulers
    assert plan.chosen.clusters == row.clusters
    assert plan.chosen.utilisation <= plan.threshold
    table = result.table()
    assert f"split into {row.clusters} independent clusters" in table
    assert "events/task" in table
    assert any("own scheduler" in a and f"{row.clusters} clusters" in a for a in result.assumptions)
    saved = json.loads((tmp_path / "estimate.json").read_text())
    assert saved["schedulers"][0]["chosen"]["clusters"] == row.clusters
    assert saved["nodes"][0]["clusters"] == row.clusters


def test_a_small_farm_keeps_one_scheduler(bench_json: Path) -> None:  # noqa: F811
    node = NodeSpec("cpu", cores=64, memory_bytes=512e9)
    result = sizing.estimate(bench_json, 1.0, nodes=[node])
    (row,) = result.rows
    assert row.clusters == 1
    assert "one cluster suffices" in result.table()
