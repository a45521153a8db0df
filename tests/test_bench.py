"""trackflow bench: the headline ratios from sweep entries, and one real small sweep on a
2-worker LocalCluster (real TrackML hits subsampled to small events, untrained models)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackflow import config
from trackflow.bench.headline import dask_cpu_per_batch, headline_numbers
from trackflow.bench.side_by_side import DirectProcess, PlainProcesses
from trackflow.bench.sweep import BenchConfig, run_bench
from trackflow.errors import ConfigError
from trackflow.estimation import sizing as estimates
from trackflow.estimation.bench_file import read_bench
from trackflow.events import list_events
from trackflow.events.subsample import subsample_event
from trackflow.pipeline.pipeline import Pipeline
from trackflow.run.batching import make_batches
from trackflow.run.executors import make_executor


def point(mode: str, workers: int, concurrency: int, rate: float, **extra: object) -> dict:
    return {
        "mode": mode,
        "workers": workers,
        "threads": 1,
        "concurrency": concurrency,
        "batch_size": 4,
        "repeat": 0,
        "events_per_second": rate,
        "overhead": extra.get("overhead"),
    }


def test_headline_numbers_from_sweep_entries() -> None:
    overhead = {"batches": 10, "sum_s": 0.5, "task_sum_s": 20.0, "worker_side_mean_s": 0.01}
    sweep = [
        point("direct", 1, 1, 10.0),
        point("fused", 1, 1, 9.0, overhead=overhead),
        point("fused", 1, 2, 9.5, overhead={**overhead, "sum_s": 5.0}),
        point("fused", 2, 1, 15.0, overhead=overhead),
        point("fused", 2, 2, 19.0, overhead=overhead),
        point("staged", 1, 2, 5.0),
        point("staged", 2, 1, 6.0),
        point("staged", 2, 2, 8.0),
    ]
    numbers = headline_numbers(sweep, batch_size=4)
    # best fused with 2 workers over 2 x direct on one thread
    assert numbers["scaling_efficiency"] == pytest.approx(19.0 / (2 * 10.0))
    # best over concurrency, at the most workers measured
    assert numbers["fused_over_staged"] == pytest.approx(19.0 / 8.0)
    assert numbers["fused_over_staged_by_workers"]["1"] == pytest.approx(9.5 / 5.0)
    # overhead from 1 worker, 1 batch in flight only
    assert numbers["dask_overhead_fraction"] == pytest.approx(0.5 / 20.0)
    assert numbers["dask_overhead_per_batch_s"] == pytest.approx(0.5 / 10)


def test_scaling_from_rounds_side_by_side_over_all_their_events() -> None:
    """With rounds of direct and fused taking turns, the scaling efficiency is theirs (a ratio
    of sums over the rounds), not the sweep's points measured minutes apart."""
    sweep = [point("direct", 1, 1, 10.0), point("fused", 2, 2, 30.0)]

    def one(number: int, direct_wall: float, fused_wall: float) -> dict:
        return {
            "round": number,
            "direct": {
                "events": 20,
                "wall_s": direct_wall,
                "busy_s": direct_wall,
                "events_per_second": 20 / direct_wall,
            },
            "fused": {
                "events": 20,
                "wall_s": fused_wall,
                "busy_s": 1.8 * fused_wall,
                "events_per_second": 20 / fused_wall,
            },
        }

    rounds = [one(0, 2.0, 1.0), one(1, 3.0, 1.6)]
    numbers = headline_numbers(sweep, batch_size=4, scaling_rounds={2: rounds})
    assert numbers["scaling_efficiency"] == pytest.approx((40 / 2.6) / (2 * 40 / 5.0))
    detail = numbers["scaling_efficiency_detail"]
    assert detail["round_ratios"] == pytest.approx([1.0, 3.0 / 3.2])
    assert detail["rounds"] == rounds and detail["rounds_error"] is None
    # the loss broken down: workers idle 10 % of the time, events 1.8 x 2.6 / 5.0 as long in them
    assert detail["fused_utilisation"] == pytest.approx(0.9)
    assert detail["event_time_ratio"] == pytest.approx(1.8 * 2.6 / 5.0)
    assert "plain_scaling" not in detail  # no plain processes in these rounds
    # with W plain processes (no Dask) in the rounds: the node's own scaling, and Dask's share
    plain = {"events": 20, "wall_s": 1.25, "busy_s": 2.25, "events_per_second": 16.0}
    with_plain = [r | {"plain": plain} for r in rounds]
    detail = headline_numbers(sweep, batch_size=4, scaling_rounds={2: with_plain})[
        "scaling_efficiency_detail"
    ]
    assert detail["plain_scaling"] == pytest.approx((40 / 2.5) / (2 * 40 / 5.0))
    assert detail["fused_over_plain"] == pytest.approx((40 / 2.6) / (40 / 2.5))
    assert detail["plain_utilisation"] == pytest.approx(4.5 / (2 * 2.5))
    assert detail["plain_event_time_ratio"] == pytest.approx((4.5 / 40) / (5.0 / 40))
    assert detail["fused_utilisation"] == pytest.approx(0.9)  # unchanged by the plain runs
    # rounds of another worker count, or none: from the sweep's points, and why
    numbers = headline_numbers(sweep, batch_size=4, scaling_rounds={4: rounds}, scaling_rounds_error="why")
    assert numbers["scaling_efficiency"] == pytest.approx(30.0 / 20.0)
    assert numbers["scaling_efficiency_detail"]["rounds_error"] == "why"


def test_headline_numbers_missing_modes_are_null() -> None:
    numbers = headline_numbers([point("staged", 1, 1, 3.0)], batch_size=4)
    assert numbers["scaling_efficiency"] is None
    assert numbers["fused_over_staged"] is None
    assert numbers["dask_overhead_fraction"] is None


def test_dask_cpu_per_batch_from_the_fewest_workers() -> None:
    def entry(workers: int, client: float, worker_cpu: float, in_task: float, batches: int) -> dict:
        cpu = {"client_process": client, "workers": worker_cpu, "in_task": in_task, "batches": batches}
        return {**point("fused", workers, 1, 1.0), "cpu_s": cpu}

    sweep = [
        entry(1, 0.4, 5.3, 5.0, 4),
        entry(1, 0.2, 2.6, 2.5, 2),
        entry(2, 9.0, 9.0, 1.0, 2),  # more workers: not used
        point("direct", 1, 1, 1.0),  # no cpu_s: not used
    ]
    cpu = dask_cpu_per_batch(sweep)
    assert cpu is not None and cpu["workers"] == 1 and cpu["batches"] == 6
    assert cpu["client_process"] == pytest.approx(0.6 / 6)
    assert cpu["worker_side"] == pytest.approx((5.3 + 2.6 - 5.0 - 2.5) / 6)
    assert dask_cpu_per_batch([point("direct", 1, 1, 1.0)]) is None


def test_bench_config_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="modes: unknown mode"):
        BenchConfig(tmp_path, tmp_path, modes=["fused", "ensemble"])
    with pytest.raises(ConfigError, match="workers: need positive integers"):
        BenchConfig(tmp_path, tmp_path, workers=[0, 2])
    with pytest.raises(ConfigError, match=r"bench\.min_point_s: must be >= 0 s"):
        BenchConfig(tmp_path, tmp_path, min_point_s=-1)
    with pytest.raises(ConfigError, match=r"bench\.scaling_rounds: must be >= 0"):
        BenchConfig(tmp_path, tmp_path, scaling_rounds=-1)


@pytest.fixture(scope="module")
def small_events(trackml_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real TrackML events cut down to 300 random hits each (keeps the sweep quick)."""
    out = tmp_path_factory.mktemp("small-events")
    rng = np.random.default_rng(0)
    for ref in list_events(trackml_dir)[:4]:
        subsample_event(ref, 300, rng, out)
    return out


@pytest.mark.slow
def test_small_bench_on_two_worker_local_cluster(small_events: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    config = BenchConfig(
        small_events,
        out,
        workers=[1, 2],
        threads=[1],
        concurrency=[1, 2],
        modes=["fused", "staged", "direct"],
        batch_size=2,
        hits=250,  # cut further, as `--hits` does for full-size events
        size_sweep=[100, 150, 200],
        size_events=2,
        loader=Pipeline.random_init,
        contention_seconds=1.0,
        min_point_s=0,  # each event once: the counts below are the events'
        scaling_rounds=2,
    )
    returned = run_bench(config)
    bench = json.loads((out / "bench.json").read_text())
    assert bench["events"] == 4
    assert bench["input_hits_per_event"]["mean"] == 300  # before the cut to 250
    for key in ("scaling_efficiency", "fused_over_staged", "dask_overhead_fraction"):
        assert isinstance(bench[key], float) and bench[key] > 0, key
    assert bench["scaling_efficiency"] == pytest.approx(returned["scaling_efficiency"])

    # the sweep: every Dask point of (mode, workers, concurrency), direct once; nothing failed
    combos = {(p["mode"], p["workers"], p["concurrency"]) for p in bench["sweep"]}
    expected = {(m, w, k) for m in ("fused", "staged") for w in (1, 2) for k in (1, 2)}
    assert combos == expected | {("direct", 1, 1)}
    for p in bench["sweep"]:
        assert p["events"] == 4 and p["failed"] == 0
        assert p["hits"] == 4 * 250
        assert p["events_per_second"] == pytest.approx(4 / p["wall_s"])
        assert set(p["stages"]) >= {"embedding", "graph_building", "filter", "gnn", "labelling"}
    two_workers = [p for p in bench["sweep"] if p["workers"] == 2 and p["mode"] != "direct"]
    assert all(len(p["per_worker"]) >= 1 for p in two_workers)

    # the headline numbers agree with the sweep they were computed from
    def best(mode: str, workers: int) -> float:
        return max(
            p["events_per_second"] for p in bench["sweep"] if p["mode"] == mode and p["workers"] == workers
        )

    # scaling: 2 rounds of direct and fused on 2 workers taking turns, over all their events
    detail = bench["scaling_efficiency_detail"]
    assert detail["workers"] == 2 and [r["round"] for r in detail["rounds"]] == [0, 1]
    assert all(
        r[m]["events"] == 4 and r[m]["busy_s"] > 0
        for r in detail["rounds"]
        for m in ("direct", "plain", "fused")
    )
    assert 0 < detail["fused_utilisation"] <= 1 and detail["event_time_ratio"] > 0
    assert 0 < detail["plain_utilisation"] <= 1 and detail["plain_scaling"] > 0

    def rate(which: str) -> float:
        return 8 / sum(r[which]["wall_s"] for r in detail["rounds"])

    assert bench["scaling_efficiency"] == pytest.approx(rate("fused") / (2 * rate("direct")))
    assert detail["plain_scaling"] == pytest.approx(rate("plain") / (2 * rate("direct")))
    assert detail["fused_over_plain"] == pytest.approx(rate("fused") / rate("plain"))
    assert min(detail["round_ratios"]) <= bench["scaling_efficiency"] <= max(detail["round_ratios"])
    assert bench["fused_over_staged"] == pytest.approx(best("fused", 2) / best("staged", 2))

    # service times: every event of every fused run, with its hits; per worker for 2 workers
    fused2 = bench["service_times"]["fused/w2/t1"]
    assert len(fused2["per_event_s"]) == 4 * 2  # 4 events x 2 concurrency values
    assert set(fused2["per_event_hits"]) == {250}
    # of each event's time, the part reading its files (the online prediction leaves it out)
    reads = fused2["per_event_read_s"]
    assert len(reads) == 8 and all(0 < r < s for r, s in zip(reads, fused2["per_event_s"], strict=True))
    assert sum(w["events"] for w in fused2["by_worker"].values()) == 8
    assert sum(fused2["per_batch_events"]) == 8

    # size scaling measured on subsampled events, and a fit through it
    measured = bench["size_scaling"]["measured"]
    assert {p["hits"] for p in measured} == {100, 150, 200}
    assert all(set(p["counts"]) >= {"edges_graph", "edges_filter"} for p in measured)
    assert bench["size_scaling"]["b"] > 0
    # 3 sizes with per-stage times and counts: the per-stage model, readable back
    assert bench["size_scaling"]["model"] == "per-stage"
    scaling = estimates.SizeScaling.from_dict(bench["size_scaling"])
    assert {s.stage for s in scaling.stages} >= {"embedding", "graph_building", "filter", "gnn"}
    assert scaling.seconds(400) > 0

    # the node contention probe ran every usable core at once, then one process alone
    contention = bench["node_contention"]
    assert contention is not None, bench["node_contention_error"]
    assert contention["cores"] == bench["machine"]["cpus_usable"]
    assert contention["slowdown"] > 0 and contention["events"]["alone"] >= 1
    # Dask's own CPU per batch, from the CPU times of the fused runs
    cpu = bench["dask_cpu_per_batch_s"]
    assert cpu["workers"] == 1 and cpu["client_process"] > 0 and cpu["worker_side"] >= 0
    assert all(p["cpu_s"]["batches"] == 2 for p in bench["sweep"] if p["mode"] != "direct")

    network = bench["network"]
    assert network["round_trip_s"]["p50"] > 0
    assert network["transfer"]["how"] == "worker-to-worker"
    assert network["bytes_per_event"] == pytest.approx(
        network["input_bytes_per_event"] + network["result_bytes_per_event"]
    )
    assert bench["memory"]["worker_peak_bytes"] >= bench["memory"]["worker_rss_bytes"] > 0
    assert bench["machine"]["cpu_count"] >= 1

    for name in bench["plots"]:
        assert (out / name).stat().st_size > 1000
    assert {"throughput_vs_workers.png", "modes.png", "stages.png"} <= set(bench["plots"])

    # the estimate reads this bench.json as it is
    result = estimates.estimate(out / "bench.json", 100.0, nodes=["cpu=cores:128,mem:512GB"])
    assert result.rows[0].measured and result.rows[0].nodes >= 1


@pytest.mark.slow
def test_auto_batches_in_a_bench_are_cut_for_each_clusters_worker_slots(
    small_events: Path, tmp_path: Path
) -> None:
    """``batch_size="auto"``: each point runs the batches reconstruct would cut on its cluster:
    the 4 events (within one batch's hit budget) as 1 batch on 1 worker and in the direct loop,
    2 batches of 2 on 2 workers, so neither worker waits for the other's batch. With
    ``min_point_s`` each point replays the events whole times over (the same count in every
    point), and the batches stay balanced."""
    out = tmp_path / "bench"
    bench_config = BenchConfig(
        small_events,
        out,
        workers=[1, 2],
        threads=[1],
        concurrency=[1],
        modes=["fused", "direct"],
        batch_size="auto",
        hits=250,
        size_sweep=[],
        loader=Pipeline.random_init,
        contention=False,
        plots=False,
        min_point_s=1.0,  # 4 events of 250 hits take a few 10 ms each: replayed
    )
    with config.set(**{"workflow.auto_batch.min_batches": 1}):
        run_bench(bench_config)
    bench = read_bench(out / "bench.json")
    assert bench.config["batch_size"] == "auto" and bench.config["min_point_s"] == 1.0
    replays = {p["replays"] for p in bench.sweep}
    assert len(replays) == 1 and (k := replays.pop()) > 1
    assert k % 2 == 0  # a multiple of the most slots (2): each worker runs whole copies of the 4 events
    assert bench.events == 4 and all(p["events"] == 4 * k for p in bench.sweep)
    assert bench.batch_size == 4 * k  # the most events one batch held: all of them, on one slot
    batches = {(p["mode"], p["workers"]): p["overhead"] for p in bench.sweep}
    assert batches[("fused", 1)]["batches"] == 1
    assert batches[("fused", 2)]["batches"] == 2
    assert bench.service_times["fused/w2/t1"].per_batch_events == [2 * k, 2 * k]
    assert bench.service_times["direct/w1/t1"].per_batch_events == [4 * k]
    assert bench.dask_overhead_detail["batch_size"] == "auto"
    assert bench.dask_overhead_fraction is not None and bench.dask_overhead_fraction > 0
    with pytest.raises(ConfigError, match="batch_size"):
        BenchConfig(small_events, out, batch_size="many")


def test_direct_process_runs_the_direct_loop_in_a_process_of_its_own(small_events: Path) -> None:
    """The scaling rounds' direct loop: a spawned process gives the tracks the in-process direct
    loop gives, and a pipeline that cannot load is a RuntimeError that says why."""
    refs = list_events(small_events)
    batches = make_batches(refs, batch_size=2)
    in_process = list(make_executor("direct", pipeline=Pipeline.random_init()).execute(batches))
    with DirectProcess((None, "cpu", 1, Pipeline.random_init), warm_up=batches[:1]) as direct:
        spawned = direct.execute(batches)
        again = direct.execute(batches[:1])
        pid = direct.pid
    assert pid is not None and pid != os.getpid() and direct.pid is None  # closed on leaving
    assert [r.event_ids for r in spawned] == [b.event_ids for b in batches]
    for mine, theirs in zip(spawned, in_process, strict=True):
        pd.testing.assert_frame_equal(mine.tracks, theirs.tracks)
    assert again[0].event_ids == batches[0].event_ids
    with pytest.raises(RuntimeError, match=r"the direct process failed: .*no-such-models"):
        DirectProcess((small_events / "no-such-models", "cpu", 1, None))


def test_plain_processes_share_the_batches_and_run_at_once(small_events: Path) -> None:
    """The rounds' plain processes (no Dask): batch k to process k mod W, each in a process of
    its own running at the same time as the others, with the in-process loop's tracks."""
    refs = list_events(small_events)
    batches = make_batches(refs * 3, batch_size=1)  # 6 events a process: long enough to overlap
    assert len(batches) == 12
    in_process = {
        r.event_ids: r.tracks
        for r in make_executor("direct", pipeline=Pipeline.random_init()).execute(batches)
    }
    with PlainProcesses((None, "cpu", 1, Pipeline.random_init), 2, warm_up=batches[:1]) as plain:
        pids = [p.pid for p in plain.processes]
        results = plain.execute(batches)
        assert plain.first is plain.processes[0]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    # process 0 ran batches 0, 2, 4, ..., process 1 batches 1, 3, 5, ..., each share in order
    order = [*range(0, 12, 2), *range(1, 12, 2)]
    assert [r.event_ids for r in results] == [batches[k].event_ids for k in order]
    # the two shares overlapped in time: they ran at once, not one after the other
    spans = [
        (min(e.start for r in share for e in r.events), max(e.stop for r in share for e in r.events))
        for share in (results[:6], results[6:])
    ]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]
    for result in results:
        pd.testing.assert_frame_equal(result.tracks, in_process[result.event_ids])
    assert all(p.pid is None for p in plain.processes)  # closed on leaving
    with pytest.raises(RuntimeError, match=r"the direct process failed: .*no-such-models"):
        PlainProcesses((small_events / "no-such-models", "cpu", 1, None), 2)
