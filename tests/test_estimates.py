"""Estimates: unit parsing, node specs, size scaling and the sizing arithmetic on a synthetic bench.

The bench numbers here are synthetic inputs; every expected value is recomputed in the test from
those inputs, never copied from the code's output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from trackflow.errors import ConfigError
from trackflow.estimation import sizing as estimates
from trackflow.estimation.bench_file import (
    BENCH_SCHEMA_VERSION,
    BenchFile,
    HitsPerEvent,
    MemoryFigures,
    NetworkFigures,
    RoundTrip,
    ServiceTimes,
    read_bench,
)
from trackflow.estimation.sizing import NodeSpec, SizeScaling
from trackflow.percentiles import summary

# ---------------------------------------------------------------------------------------------
# units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512GB", 512e9),
        ("512GiB", 512 * 2**30),
        ("1.5TB", 1.5e12),
        ("64MiB", 64 * 2**20),
        ("100 kB", 1e5),
        ("4096", 4096.0),
    ],
)
def test_parse_bytes(text: str, expected: float) -> None:
    assert estimates.parse_bytes(text) == pytest.approx(expected)


def test_parse_bytes_refuses_ambiguous_prefix() -> None:
    with pytest.raises(ConfigError, match="ambiguous"):
        estimates.parse_bytes("512G", "--node cpu: mem")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500", 500.0), ("1kHz", 1000.0), ("2.5 kHz", 2500.0), ("1MHz", 1e6), ("750Hz", 750.0)],
)
def test_parse_rate(text: str, expected: float) -> None:
    assert estimates.parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5", 0.5), ("500ms", 0.5), ("2s", 2.0), ("250us", 250e-6), ("1min", 60.0)],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert estimates.parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["fast", "-3", "0"])
def test_parse_rate_errors_name_the_option(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^rate: "):
        estimates.parse_rate(bad)


def test_parse_bandwidth_bits_and_bytes() -> None:
    assert estimates.parse_bandwidth("200Gbit/s") == pytest.approx(25e9)
    assert estimates.parse_bandwidth("200Gbps") == pytest.approx(25e9)
    assert estimates.parse_bandwidth("25GB/s") == pytest.approx(25e9)


def test_node_spec_parse() -> None:
    cpu = NodeSpec.parse("cpu=cores:128,mem:512GB")
    assert (cpu.name, cpu.cores, cpu.gpus, cpu.memory_bytes) == ("cpu", 128, 0, 512e9)
    assert cpu.kind == "cpu"
    gpu = NodeSpec.parse("gpu=gpus:4,cores:64,mem:256GiB,net:200Gbit/s")
    assert (gpu.gpus, gpu.cores, gpu.memory_bytes) == (4, 64, 256 * 2**30)
    assert gpu.network_bytes_per_s == pytest.approx(25e9)
    assert gpu.kind == "gpu"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cores:128", "NAME="),
        ("cpu=cores:lots", "cores"),
        ("cpu=cores:8,disk:1TB", "unknown key"),
        ("cpu=mem:8GB", "needs cores"),
    ],
)
def test_node_spec_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeSpec.parse(text)


# ---------------------------------------------------------------------------------------------
# size scaling


def test_size_scaling_recovers_power_law() -> None:
    hits = np.array([1e3, 3e3, 1e4, 3e4, 1e5])
    a, b, k = 0.05, 2e-6, 1.3
    scaling = SizeScaling.fit(hits, a + b * hits**k)
    assert scaling.k == pytest.approx(k, rel=0.02)
    assert scaling.seconds(2e5) == pytest.approx(a + b * 2e5**k, rel=0.03)
    assert SizeScaling.from_dict(scaling.to_dict()) == scaling


def test_size_scaling_with_two_sizes_is_linear() -> None:
    scaling = SizeScaling.fit(np.array([1000, 1000, 2000]), np.array([1.0, 1.0, 1.5]))
    assert scaling.k == 1.0
    assert scaling.seconds(4000) == pytest.approx(2.5, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# the estimate on a synthetic bench


HITS = 1000.0
SERVICE_1T = np.array([0.08, 0.09, 0.10, 0.11, 0.12] * 4)  # s per event, 1 thread, mean 0.1
SERVICE_2T = SERVICE_1T * 0.6  # 2 threads: faster, but 1.2 core-s per 1 core-s: costlier
OVERHEAD = 0.002  # s per task
RSS, PEAK = 400e6, 600e6
BYTES_PER_HIT = 40.0


def service_times(mode: str, threads: int, samples: np.ndarray, workers: int = 1) -> ServiceTimes:
    """One configuration's record: per-event samples of HITS hits; no read times measured."""
    n = len(samples)
    return ServiceTimes(
        mode=mode,
        workers=workers,
        threads=threads,
        device="cpu",
        per_event_s=samples.tolist(),
        per_event_hits=[HITS] * n,
        per_event_read_s=[],
        per_event_worker=["w"] * n,
        per_batch_s=[],
        per_batch_events=[],
        per_batch_worker=[],
        per_batch_latency_s=[],
        per_batch_overhead_s=[],
        concurrency=[],
        by_worker={},
        per_event=summary(samples),
        per_batch=summary([]),
    )


def synthetic_bench() -> BenchFile:
    """A complete bench record with the numbers the estimates read chosen to make checks easy."""
    return BenchFile(
        created="2026-12-06T00:00:00+00:00",
        duration_s=1.0,
        input_dir="events",
        config={},
        machine={"cpu_count": 2},
        device="cpu",
        batch_size=1,
        events=len(SERVICE_1T),
        hits_per_event=HitsPerEvent(HITS, HITS, HITS),
        input_hits_per_event=HitsPerEvent(HITS, HITS, HITS),
        scaling_efficiency=None,
        scaling_efficiency_detail={},
        fused_over_staged=None,
        fused_over_staged_by_workers={},
        dask_overhead_fraction=None,
        dask_overhead_per_batch_s=OVERHEAD,
        dask_overhead_detail={},
        sweep=[],
        service_times={
            "fused/w1/t1": service_times("fused", 1, SERVICE_1T),
            "fused/w1/t2": service_times("fused", 2, SERVICE_2T),
            "staged/w1/t1": service_times("staged", 1, SERVICE_1T * 5),  # must be ignored
        },
        # time exactly proportional to hits: t = 1e-4 * h
        size_scaling=SizeScaling(a=0.0, b=1e-4, k=1.0, points=5, hits_range=(100, 1000)),
        size_measured=[],
        node_contention=None,
        dask_cpu_per_batch_s=None,
        node_contention_error="not asked for",
        network=NetworkFigures(
            round_trip_s=RoundTrip(p50=0.001, mean=0.0012, min=0.001, samples=3, what=""),
            client_scheduler_s=None,
            transfer=None,
            transfer_bytes_per_s=1e9,
            input_bytes_per_event=BYTES_PER_HIT * HITS,
            result_bytes_per_event=0.0,
            bytes_per_event=BYTES_PER_HIT * HITS,
            bytes_per_hit=BYTES_PER_HIT,
        ),
        memory=MemoryFigures(
            worker_rss_bytes=RSS, worker_peak_bytes=PEAK, peak_hits=HITS, working_bytes_fit=None, what=""
        ),
        plots=[],
    )


def dask_cpu(client_process: float, worker_side: float) -> dict:
    """bench.json's ``dask_cpu_per_batch_s`` record with these CPU seconds per batch."""
    return {
        "workers": 1,
        "batches": 10,
        "client_process": client_process,
        "worker_side": worker_side,
        "what": "",
    }


@pytest.fixture
def bench_json(tmp_path: Path) -> Path:
    """A bench.json written by the schema's own writer, from :func:`synthetic_bench`."""
    return synthetic_bench().write(tmp_path / "bench.json")


def test_estimate_cpu_node_arithmetic(bench_json: Path, tmp_path: Path) -> None:
    rate, headroom = 510.0, 0.25
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    result = estimates.estimate(bench_json, rate, nodes=[node], headroom=headroom)
    (row,) = result.rows
    assert row.measured
    # 1 thread is cheaper in core-s and fits the same: expected choice
    assert row.threads_per_worker == 1
    mean_service = SERVICE_1T.mean() + OVERHEAD
    servers = math.ceil(rate * mean_service / (1 - headroom))
    assert row.servers == servers
    assert row.nodes == math.ceil(servers / 128)
    assert row.cores == servers
    assert row.utilisation == pytest.approx(rate * mean_service / servers)
    assert row.utilisation <= 1 - headroom
    assert row.cost_core_s_per_event == pytest.approx(mean_service)
    assert row.network_bytes_per_s == pytest.approx(BYTES_PER_HIT * HITS * rate)
    assert row.memory_bytes == pytest.approx(servers * PEAK)
    # latency can never beat network + the fastest service, and p50 <= p95 <= p99
    network = 0.001 + BYTES_PER_HIT * HITS / 1e9
    assert row.latency_s["p50"] >= network + SERVICE_1T.min()
    assert row.latency_s["p50"] <= row.latency_s["p95"] <= row.latency_s["p99"]
    table = result.table()
    assert "cpu" in table and "assumptions:" in table


def test_estimate_scales_to_bigger_events(bench_json: Path) -> None:
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    small = estimates.estimate(bench_json, 100.0, nodes=[node], headroom=0.0)
    big = estimates.estimate(bench_json, 100.0, nodes=[node], headroom=0.0, event_hits=4000)
    # t ∝ hits in the fixture: 4x the hits, 4x the per-event compute (the task overhead stays)
    assert big.rows[0].service_mean_s == pytest.approx(SERVICE_1T.mean() * 4 + OVERHEAD)
    assert big.rows[0].servers == math.ceil(100.0 * (SERVICE_1T.mean() * 4 + OVERHEAD))
    assert small.rows[0].servers < big.rows[0].servers
    assert big.rows[0].network_bytes_per_s == pytest.approx(BYTES_PER_HIT * 4000 * 100)
    assert any("EXTRAPOLATED" in a for a in big.assumptions)


def test_default_target_is_the_bench_input_size(bench_json: Path) -> None:
    bench = json.loads(bench_json.read_text())
    # the bench cut events to half their size
    bench["input_hits_per_event"] = {"mean": 2 * HITS, "min": 2 * HITS, "max": 2 * HITS}
    bench_json.write_text(json.dumps(bench))
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    result = estimates.estimate(bench_json, 100.0, nodes=[node])
    assert result.event_hits == 2 * HITS
    assert result.rows[0].service_mean_s == pytest.approx(SERVICE_1T.mean() * 2 + OVERHEAD)


def test_memory_bound_node(bench_json: Path) -> None:
    # 2 GB holds 3 workers of 600 MB although the node has 64 cores
    node = NodeSpec("small", cores=64, memory_bytes=2e9)
    (row,) = estimates.estimate(bench_json, 200.0, nodes=[node]).rows
    assert row.workers_per_node == int(2e9 // PEAK)
    assert row.nodes == math.ceil(row.servers / row.workers_per_node)
    assert "memory-bound" in row.note


def test_latency_budget_adds_servers_or_picks_faster_workers(bench_json: Path) -> None:
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    loose = estimates.estimate(bench_json, 50.0, nodes=[node], headroom=0.0).rows[0]
    # a budget below the 1-thread p95 service time can only be met by 2-thread workers
    budget = float(np.percentile(SERVICE_1T, 95)) * 0.9
    tight = estimates.estimate(bench_json, 50.0, 0.0 + budget, nodes=[node], headroom=0.0).rows[0]
    assert tight.meets_budget is True
    assert tight.threads_per_worker == 2
    assert tight.latency_s["p95"] <= budget
    assert loose.meets_budget is None
    impossible = estimates.estimate(bench_json, 50.0, 0.001, nodes=[node]).rows[0]
    assert impossible.meets_budget is False


def test_gpu_without_measurements_is_not_invented(bench_json: Path) -> None:
    gpu = NodeSpec.parse("gpu=gpus:4,cores:64,mem:256GB")
    (row,) = estimates.estimate(bench_json, 100.0, nodes=[gpu]).rows
    assert not row.measured
    assert row.nodes is None
    assert "no GPU measurements" in row.note
    assert "not measured" in estimates.estimate(bench_json, 100.0, nodes=[gpu]).table()
    # only with an explicit assumption, and then it says so
    result = estimates.estimate(bench_json, 100.0, nodes=[gpu], headroom=0.0, gpu_speedup=10.0)
    (assumed,) = result.rows
    assert assumed.measured
    assert "ASSUMED" in assumed.note
    mean_gpu = (SERVICE_1T.mean() + OVERHEAD) / 10.0
    assert assumed.gpus == math.ceil(100.0 * mean_gpu)
    assert assumed.cost_gpu_s_per_event == pytest.approx(mean_gpu)


def test_estimate_writes_json_and_plot(bench_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "est"
    result = estimates.estimate(bench_json, "1kHz", out_dir=out)  # type: ignore[arg-type]
    data = json.loads((out / "estimate.json").read_text())
    assert data["rate_hz"] == 1000.0
    assert [n["node"]["name"] for n in data["nodes"]] == ["cpu", "gpu"]
    assert (out / "nodes_vs_rate.png").stat().st_size > 0
    # nodes against rate never decreases with rate
    cpu_curve = np.array(result.curve["cpu"])
    assert np.all(np.diff(cpu_curve) >= 0)


def test_bad_bench_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        estimates.estimate(tmp_path / "missing.json", 10.0)
    bad = tmp_path / "bench.json"
    bad.write_text(json.dumps({"version": BENCH_SCHEMA_VERSION}))
    with pytest.raises(ConfigError, match="service_times"):
        estimates.estimate(bad, 10.0)
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="no schema version"):
        estimates.estimate(bad, 10.0)


def test_bench_file_round_trips_through_its_writer(bench_json: Path) -> None:
    assert read_bench(bench_json) == synthetic_bench()
    # the file as written: the schema version, the size model with its measured points in one object
    written = json.loads(bench_json.read_text())
    assert written["version"] == BENCH_SCHEMA_VERSION
    assert written["size_scaling"]["measured"] == [] and written["size_scaling"]["b"] == 1e-4


@pytest.mark.parametrize(
    ("version", "problem"),
    [(1, "older than this trackflow's"), (BENCH_SCHEMA_VERSION + 1, "newer than this trackflow's")],
)
def test_bench_of_another_schema_version_is_refused_in_one_line(
    bench_json: Path, version: int, problem: str
) -> None:
    bench = json.loads(bench_json.read_text())
    bench["version"] = version
    bench_json.write_text(json.dumps(bench))
    with pytest.raises(ConfigError) as caught:
        estimates.estimate(bench_json, 10.0)
    message = str(caught.value)
    assert message.startswith(f"{bench_json}: bench.json schema version {version}, {problem}")
    assert "\n" not in message


def test_bench_with_a_missing_or_unknown_field_is_refused(bench_json: Path) -> None:
    bench = json.loads(bench_json.read_text())
    del bench["memory"]["peak_hits"]
    bench_json.write_text(json.dumps(bench))
    with pytest.raises(ConfigError, match=r"no 'memory.peak_hits'"):
        read_bench(bench_json)
    bench["memory"]["peak_hits"] = HITS
    bench["service_times"]["fused/w1/t1"]["extra"] = 1
    bench_json.write_text(json.dumps(bench))
    with pytest.raises(ConfigError, match=r"unknown 'service_times.fused/w1/t1.extra'"):
        read_bench(bench_json)


def test_predict_finite_batch_run_with_constant_service() -> None:
    # 5 batches of 3 events, 2 workers, all 5 in flight, 1 s each: waves of 2, 2, 1 -> 3 s
    prediction = estimates.predict_batch_workflow(
        workers=2,
        in_flight=5,
        per_batch_s=np.array([1.0]),
        events_per_batch=3,
        overhead_s=0.0,
        batches=5,
        replicates=3,
    )
    assert prediction["events_per_second"] == pytest.approx(15 / 3.0)
    # latencies 1, 1, 2, 2, 3 s: p50 = 2
    assert prediction["p50"] == pytest.approx(2.0)
    steady = estimates.predict_batch_workflow(
        workers=2, in_flight=4, per_batch_s=np.array([1.0]), events_per_batch=3, overhead_s=0.0
    )
    assert steady["events_per_second"] == pytest.approx(2 * 3 / 1.0, rel=0.01)
    assert steady["p50"] == pytest.approx(4 / 2 * 1.0, rel=0.01)  # Little: K / throughput (batches)


def test_working_memory_fit_replaces_linear_scaling(bench_json: Path) -> None:
    bench = json.loads(bench_json.read_text())
    # working memory grows as 1e5 * hits**0.5 bytes (a = 0)
    bench["memory"]["working_bytes_fit"] = {"a": 0.0, "b": 1e5, "k": 0.5}
    bench_json.write_text(json.dumps(bench))
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    (row,) = estimates.estimate(bench_json, 100.0, nodes=[node], event_hits=40_000).rows
    assert row.memory_bytes == pytest.approx(row.servers * (RSS + 1e5 * 40_000**0.5))


# ---------------------------------------------------------------------------------------------
# node contention and the per-stage size model in the estimate


def with_contention(bench_json: Path, cores: int, slowdown: float) -> Path:
    bench = json.loads(bench_json.read_text())
    bench["node_contention"] = {"cores": cores, "slowdown": slowdown}
    bench_json.write_text(json.dumps(bench))
    return bench_json


def test_full_node_gets_the_measured_contention(bench_json: Path) -> None:
    rate, headroom, slowdown = 510.0, 0.25, 1.3
    with_contention(bench_json, cores=4, slowdown=slowdown)
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    (row,) = estimates.estimate(bench_json, rate, nodes=[node], headroom=headroom).rows
    # 2 threads: x1.3/1.1 (1.1 already inside), 0.142 core-s per event against 0.133: 1 thread
    assert row.threads_per_worker == 1
    # benched with 1 worker (1 busy core): a full node multiplies every service time by 1.3
    mean_service = (SERVICE_1T.mean() + OVERHEAD) * slowdown
    assert row.service_mean_s == pytest.approx(mean_service)
    assert row.servers == math.ceil(rate * mean_service / (1 - headroom))
    assert "contention x1.30" in row.note


def test_half_full_node_gets_interpolated_contention(bench_json: Path) -> None:
    # 64 workers of RSS + working memory fit in the memory: half of 128 cores busy, mapped onto
    # a 5-core bench machine: 2.5 busy cores -> 1 + 0.4 * 1.5 / 4
    with_contention(bench_json, cores=5, slowdown=1.4)
    per_worker = RSS + (PEAK - RSS) * HITS / HITS
    node = NodeSpec("cpu", cores=128, memory_bytes=64 * per_worker)
    (row,) = estimates.estimate(bench_json, 100.0, nodes=[node], headroom=0.2).rows
    assert row.workers_per_node == 64
    assert row.service_mean_s == pytest.approx((SERVICE_1T.mean() + OVERHEAD) * (1 + 0.4 * 1.5 / 4))


def test_profile_benched_with_two_workers_is_not_slowed_twice(bench_json: Path) -> None:
    bench = json.loads(bench_json.read_text())
    entry = dict(bench["service_times"]["fused/w1/t1"], workers=2)
    bench["service_times"] = {"fused/w2/t1": entry}
    bench["node_contention"] = {"cores": 4, "slowdown": 1.3}
    bench_json.write_text(json.dumps(bench))
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    (row,) = estimates.estimate(bench_json, 100.0, nodes=[node]).rows
    already = 1 + 0.3 * (2 - 1) / 3  # the contention inside samples taken with 2 busy cores
    assert row.service_mean_s == pytest.approx((SERVICE_1T.mean() + OVERHEAD) * 1.3 / already)


def test_no_contention_measured_is_said(bench_json: Path) -> None:
    result = estimates.estimate(bench_json, 100.0, nodes=["cpu=cores:128,mem:512GB"])
    assert any("contention NOT measured" in a for a in result.assumptions)
    assert result.rows[0].service_mean_s == pytest.approx(SERVICE_1T.mean() + OVERHEAD)


def test_gpu_service_is_not_slowed_by_cpu_contention(bench_json: Path) -> None:
    with_contention(bench_json, cores=2, slowdown=1.5)
    (row,) = estimates.estimate(
        bench_json, 100.0, nodes=["gpu=gpus:4,cores:64,mem:256GB"], gpu_speedup=10.0
    ).rows
    assert row.service_mean_s == pytest.approx((SERVICE_1T.mean() + OVERHEAD) / 10.0)


def test_predict_with_contention_slows_every_batch() -> None:
    # constant 1 s batches slowed to 1.5 s: 5 batches on 2 workers take 3 waves = 4.5 s
    prediction = estimates.predict_batch_workflow(
        workers=2,
        in_flight=5,
        per_batch_s=np.array([1.0]),
        events_per_batch=3,
        overhead_s=0.0,
        batches=5,
        replicates=2,
        contention=1.5,
    )
    assert prediction["events_per_second"] == pytest.approx(15 / 4.5)
    assert prediction["p50"] == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="contention"):
        estimates.predict_batch_workflow(2, 2, np.array([1.0]), 1, 0.0, contention=0.0)


def test_estimate_extrapolates_with_the_per_stage_model(bench_json: Path) -> None:
    bench = json.loads(bench_json.read_text())
    # one stage, seconds = 0.01 + 1e-3 * edges, edges = 1e-4 * h**2: 0.11 s at 1000 hits
    bench["size_scaling"] = {
        "a": 0.0,
        "b": 1e-4,
        "k": 1.0,
        "points": 9,
        "hits_range": [250, 1000],
        "stages": [{"stage": "filter", "a": 0.01, "b": 0.0, "c": 1e-3, "count": "edges_graph"}],
        "counts": [{"name": "edges_graph", "coefficient": 1e-4, "exponent": 2.0}],
        "other_s": 0.0,
        "measured": [],
    }
    bench_json.write_text(json.dumps(bench))
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    (row,) = estimates.estimate(bench_json, 10.0, nodes=[node], event_hits=2000).rows
    ratio = (0.01 + 1e-3 * 1e-4 * 2000**2) / (0.01 + 1e-3 * 1e-4 * 1000**2)
    assert row.service_mean_s == pytest.approx(SERVICE_1T.mean() * ratio + OVERHEAD)


def test_shared_cores_service_known_cases() -> None:
    service = np.array([1.0, 2.0])
    # 1 worker on 2 cores: the spare core absorbs 0.5 s of Dask CPU per task
    assert estimates.shared_cores_service(service, 1, 2, 0.5) == pytest.approx(service)
    # 2 workers on 2 cores: every task pays for it
    assert estimates.shared_cores_service(service, 2, 2, 0.5) == pytest.approx(service + 0.5)
    # 3 workers on 4 cores, S = 1, 2 s of other CPU per task: X = 3/S' needs 2X cores, 1 spare:
    # S' = 3 * (1 + 2) / 4 = 2.25 s (check: other work 2 * 3/2.25 = 2.67 cores = 1 spare + 1.67
    # taken from the 3 workers, which keep 3 - 1.67 = 1.33 cores = 3 * 1/2.25)
    assert estimates.shared_cores_service(np.array([1.0]), 3, 4, 2.0) == pytest.approx([2.25])
    assert estimates.shared_cores_service(service, 2, 2, 0.0) == pytest.approx(service)


def test_predict_adds_dask_cpu_when_workers_fill_the_cores() -> None:
    # constant 1 s batches + 0.25 s Dask CPU, 2 workers on 2 cores: 1.25 s, steady state
    steady = estimates.predict_batch_workflow(
        workers=2,
        in_flight=4,
        per_batch_s=np.array([1.0]),
        events_per_batch=2,
        overhead_s=0.0,
        cores=2,
        dask_cpu_per_batch_s=0.25,
    )
    assert steady["events_per_second"] == pytest.approx(2 * 2 / 1.25, rel=0.01)


def test_worker_side_dask_cpu_lengthens_service_on_a_full_node(bench_json: Path) -> None:
    bench = json.loads(bench_json.read_text())
    bench["dask_cpu_per_batch_s"] = dask_cpu(client_process=0.5, worker_side=0.01)
    bench_json.write_text(json.dumps(bench))
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    (row,) = estimates.estimate(bench_json, 100.0, nodes=[node]).rows
    # 128 one-thread workers fill the 128 cores: + 0.01 s per task; the client's CPU is elsewhere
    assert row.threads_per_worker == 1
    assert row.service_mean_s == pytest.approx(SERVICE_1T.mean() + OVERHEAD + 0.01)


def test_the_service_prediction_leaves_out_the_bench_reading_files(bench_json: Path) -> None:
    from trackflow.estimation.online import samples_from_bench

    bench = json.loads(bench_json.read_text())
    read = 0.02 * np.ones_like(SERVICE_1T)  # s per event of the bench's tasks reading files
    bench["service_times"]["fused/w1/t1"]["per_event_read_s"] = read.tolist()
    bench_json.write_text(json.dumps(bench))
    # one worker on a machine of many cores: no contention, no shared Dask CPU
    model = samples_from_bench(bench_json, servers=1, cores=64, event_hits=None)
    assert np.mean(model.samples) == pytest.approx(SERVICE_1T.mean() - 0.02 + OVERHEAD)
    assert "less 20.0 ms reading files" in model.notes[0]
    # a slot holds one task at a time: Dask's CPU runs while its worker waits, not on top
    bench["dask_cpu_per_batch_s"] = dask_cpu(client_process=0.05, worker_side=0.0)
    bench_json.write_text(json.dumps(bench))
    full = samples_from_bench(bench_json, servers=1, cores=1, event_hits=None)
    assert np.mean(full.samples) == pytest.approx(SERVICE_1T.mean() - 0.02 + OVERHEAD)
    # the batch estimate reads files as the bench did: the reading stays in
    node = NodeSpec("cpu", cores=128, memory_bytes=512e9)
    (row,) = estimates.estimate(bench_json, 100.0, nodes=[node]).rows
    assert row.service_mean_s == pytest.approx(SERVICE_1T.mean() + OVERHEAD)


def test_a_bench_without_read_times_keeps_them_in_and_says_so(bench_json: Path) -> None:
    from trackflow.estimation.online import samples_from_bench

    model = samples_from_bench(bench_json, servers=1, cores=64, event_hits=None)
    assert np.mean(model.samples) == pytest.approx(SERVICE_1T.mean() + OVERHEAD)
    assert "file reading not measured" in model.notes[0]
