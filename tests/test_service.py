"""trackflow.Service and trackflow stream (issue 21), with real torch, real Dask and the shipped
models: the same tracks as the Pipeline in this process, batching by size and by time, shedding
counted with nothing lost, a stream that writes stream.json. Behaviour only, never timings."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import gun_events

import trackflow
from trackflow.cli import main
from trackflow.errors import ConfigError
from trackflow.estimation.online import FarmModel, find_knee, measured_knee
from trackflow.service import EventFailed, Service, ServiceConfig, ServiceOverloaded
from trackflow.service.batcher import DynamicBatcher, Request
from trackflow.service.stream import StreamConfig, poisson_arrivals, run_stream

N_EVENTS = 4


@pytest.fixture(scope="module")
def events_dir(sim_detectors: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small particle-gun events (ACTS, ~700 hits each)."""
    return gun_events(tmp_path_factory, "service-events", seed=3, pileup=5, events=N_EVENTS)


@pytest.fixture(scope="module")
def events(events_dir: Path) -> list[trackflow.Event]:
    return [ref.load(("hits",)) for ref in trackflow.list_events(events_dir)]


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with trackflow.open_cluster("local", workers=2, threads_per_worker=1) as handle:
        yield handle.client


# --------------------------------------------------------------------------- the batcher alone
class _Recorder:
    """A dispatch that keeps each batch's request ids and answers at once (no cluster)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.batcher: DynamicBatcher | None = None

    def __call__(self, batch: list[Request]) -> None:
        self.batches.append([r.request_id for r in batch])
        for request in batch:
            request.future.set_result(request.request_id)
        assert self.batcher is not None
        self.batcher.slot_free()
        self.batcher.batch_done(len(batch))


def _request(i: int) -> Request:
    return Request(i, None, concurrent.futures.Future(), arrived=time.monotonic())


def test_batcher_cuts_a_batch_when_it_is_full() -> None:
    recorder = _Recorder()
    batcher = DynamicBatcher(recorder, lambda _held: 1, max_batch_events=3, max_delay_s=60.0)
    recorder.batcher = batcher
    requests = [_request(i) for i in range(6)]
    for request in requests:
        batcher.put(request)
    assert [r.future.result(timeout=10) for r in requests] == list(range(6))
    assert recorder.batches == [[0, 1, 2], [3, 4, 5]]  # full batches go at once, long before 60 s
    batcher.close()


def test_batcher_sends_a_partial_batch_after_the_delay() -> None:
    recorder = _Recorder()
    batcher = DynamicBatcher(recorder, lambda _held: 1, max_batch_events=8, max_delay_s=0.3)
    recorder.batcher = batcher
    requests = [_request(i) for i in range(3)]
    for request in requests:
        batcher.put(request)
    assert [r.future.result(timeout=10) for r in requests] == [0, 1, 2]
    assert recorder.batches == [[0, 1, 2]]  # never filled: the delay sent them together
    batcher.close()


def test_a_finished_task_frees_its_slot_before_its_events_are_answered() -> None:
    # one slot: the second event goes out once the first one's task has finished, while the
    # first is still being fetched; the batcher is idle only when both are answered
    sent: list[list[Request]] = []
    batcher = DynamicBatcher(sent.append, lambda _held: 1, max_batch_events=1)
    first, second = _request(0), _request(1)
    batcher.put(first)
    batcher.put(second)
    deadline = time.monotonic() + 10
    while len(sent) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(sent) == 1  # the only slot is held by the first task
    batcher.slot_free()
    while len(sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.request_id for batch in sent for r in batch] == [0, 1]
    assert batcher.backlog() == (0, 2)  # both dispatched, neither answered
    assert not batcher.wait_idle(timeout=0.2)
    batcher.batch_done(1)
    assert not batcher.wait_idle(timeout=0.2)  # the second is still out
    batcher.slot_free()
    batcher.batch_done(1)
    assert batcher.wait_idle(timeout=5)
    batcher.close()


def test_the_in_flight_limit_is_asked_with_the_events_the_batcher_holds() -> None:
    # a second batch may go out only while the batcher holds 3 events (service.calls_per_slot
    # auto's deep backlog): the first leaves at once, the second when the third arrives, the
    # third waits for a slot
    sent: list[list[Request]] = []
    asked: list[int] = []

    def limit(held: int) -> int:
        asked.append(held)
        return 2 if held >= 3 else 1

    batcher = DynamicBatcher(sent.append, limit, max_batch_events=1)
    batcher.put(_request(0))
    batcher.put(_request(1))
    time.sleep(0.2)
    assert len(sent) == 1 and max(asked) == 2  # 1 in flight + 1 arriving or waiting
    batcher.put(_request(2))
    deadline = time.monotonic() + 10
    while len(sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert [r.request_id for batch in sent for r in batch] == [0, 1]
    assert batcher.backlog() == (1, 2)
    batcher.close(drain=False)


def test_batcher_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="queue_policy"):
        DynamicBatcher(lambda _b: None, lambda _held: 1, policy="drop")
    with pytest.raises(ConfigError, match="max_queued"):
        DynamicBatcher(lambda _b: None, lambda _held: 1, max_queued=0)


def test_closing_without_drain_counts_what_was_queued() -> None:
    batcher = DynamicBatcher(lambda _b: None, lambda _held: 0, max_batch_events=1)  # no slot ever
    requests = [_request(i) for i in range(3)]
    for request in requests:
        batcher.put(request)
    batcher.close(drain=False)
    assert all(isinstance(r.future.exception(timeout=5), trackflow.service.ServiceClosed) for r in requests)
    assert batcher.counts.closed == 3


# --------------------------------------------------------------------------- the service
def test_submit_and_map_give_the_tracks_of_the_pipeline(client: object, events: list) -> None:
    direct = trackflow.Pipeline.load()
    expected = [direct(event) for event in events]
    with Service(client) as service:
        mapped = [f.result(timeout=300) for f in service.map(events)]
        # a plain hits frame (r, phi, eta derived here) with an id of our choosing
        hits = events[0].hits[["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]]
        single = service.submit(hits, event_id=77).result(timeout=300)
        counts = service.counts()
    for got, want in zip(mapped, expected, strict=True):
        assert got.event_id == want.event_id
        np.testing.assert_array_equal(got.hit_ids, want.hit_ids)
        np.testing.assert_array_equal(got.track_labels, want.track_labels)
    assert single.event_id == 77
    np.testing.assert_array_equal(single.track_labels, expected[0].track_labels)
    assert (counts.submitted, counts.done, counts.pending) == (len(events) + 1, len(events) + 1, 0)


@pytest.mark.parametrize("dispatch", ["task", "actor"])
def test_service_batches_by_size_and_by_time(client: object, events: list, dispatch: str) -> None:
    by_size = ServiceConfig(max_batch_events=3, max_delay_ms=60_000, max_in_flight=1, dispatch=dispatch)
    with Service(client, by_size) as service:
        futures = service.map(events[:3])
        assert [f.result(timeout=300).event_id for f in futures] == [e.event_id for e in events[:3]]
        timings = service.take_timings()
        assert service.counts().batch_sizes == {3: 1}
    assert {t.batch_events for t in timings} == {3}
    # every event's latency is its queueing, transfer and service
    for timing in timings:
        assert timing.latency_s == pytest.approx(timing.queue_s + timing.transfer_s + timing.service_s)
        assert timing.service_s > 0 and timing.queue_s >= 0
        # the slot is held from dispatch until the task finished (all 3 events of the batch),
        # then the tracks are fetched with the slot free; the arrival-to-dispatch wait is the rest.
        # An actor's call brings the tracks back with it: the slot is held until they are here
        assert timing.slot_s >= sum(t.service_s for t in timings) > 0
        assert timing.fetch_s > 0 if dispatch == "task" else timing.fetch_s == 0
        assert timing.latency_s >= timing.slot_s + timing.fetch_s - 1e-9

    by_time = ServiceConfig(max_batch_events=8, max_delay_ms=500, max_in_flight=1, dispatch=dispatch)
    with Service(client, by_time) as service:
        futures = service.map(events[:2])
        assert [f.result(timeout=300).event_id for f in futures] == [e.event_id for e in events[:2]]
        assert service.counts().batch_sizes == {2: 1}


def test_a_full_queue_sheds_and_counts_and_loses_nothing(client: object, events: list) -> None:
    shed_config = ServiceConfig(max_queued=2, queue_policy="shed", max_in_flight=1)
    with Service(client, shed_config) as service:
        futures = [service.submit(events[i % len(events)]) for i in range(12)]
        outcomes = []
        for future in futures:
            error = future.exception(timeout=300)
            shed = isinstance(error, ServiceOverloaded)
            outcomes.append("shed" if shed else "done" if error is None else "?")
        counts = service.counts()
    assert "?" not in outcomes
    assert outcomes.count("shed") >= 1  # one on the cluster, two waiting: the rest arrive at a full queue
    assert counts.shed == outcomes.count("shed") and counts.done == outcomes.count("done")
    assert counts.submitted == 12 and counts.pending == 0 and counts.failed == 0


def test_a_blocking_queue_holds_the_source_back_and_sheds_nothing(client: object, events: list) -> None:
    block = ServiceConfig(max_queued=1, queue_policy="block", max_in_flight=1)
    with Service(client, block) as service:
        futures: list = []
        source = threading.Thread(target=lambda: futures.extend(service.submit(e) for e in events * 2))
        source.start()
        source.join(timeout=300)
        assert [f.result(timeout=300).event_id for f in futures] == [e.event_id for e in events * 2]
        counts = service.counts()
    assert (counts.done, counts.shed) == (2 * len(events), 0)


def test_a_bad_request_is_one_clear_error_and_a_bad_event_an_answer(client: object, events: list) -> None:
    with Service(client) as service:
        with pytest.raises(ConfigError, match="no column"):
            service.submit(events[0].hits[["hit_id", "x", "y"]])
        no_hits = events[0].hits.iloc[:0]  # the pipeline cannot run on it: this event fails, no other
        failed = service.submit(no_hits, event_id=5)
        good = service.submit(events[1])
        assert isinstance(failed.exception(timeout=300), EventFailed)
        assert good.result(timeout=300).event_id == events[1].event_id
        counts = service.counts()
    assert (counts.failed, counts.done, counts.pending) == (1, 1, 0)


# --------------------------------------------------------------------------- prediction, numbers only
def test_the_slot_limit_follows_the_workers_without_the_batcher_asking(events: list) -> None:
    # one worker, then two: the watch thread sees the second join; the batcher only reads
    with trackflow.open_cluster("local", workers=1, threads_per_worker=1) as handle:
        with Service(handle.client, ServiceConfig(calls_per_slot=1)) as service:
            assert service._in_flight_limit() == 1
            handle.cluster.scale(2)
            handle.client.wait_for_workers(2, timeout=60)
            deadline = time.monotonic() + 30
            while service._in_flight_limit() < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert service._in_flight_limit() == 2
            assert len(service.submit(events[0]).result(timeout=120).track_labels) == len(events[0].hits)
            watch = service._watch
            assert watch is not None and watch.is_alive()
        assert not watch.is_alive()  # closed with the service


def test_knees_of_a_known_queue() -> None:
    # one server, constant service 1 s: M/D/1, capacity 1 Hz
    model = FarmModel(samples=np.full(50, 1.0), servers=1)
    assert model.capacity_hz == pytest.approx(1.0)
    knee = model.knee_hz(0.05)
    assert 0.1 < knee < 0.9  # the p95 doubles well before capacity
    assert model.latency(knee)["p95"] == pytest.approx(2 * model.latency(0.05)["p95"], rel=0.05)
    assert model.latency(1.5)["p95"] == float("inf")
    assert find_knee(lambda r: r, 1.0, 10.0, 4.0) == pytest.approx(4.0, rel=1e-2)
    assert measured_knee([1, 2, 3], [1.0, 1.5, 3.0]) == pytest.approx(2 + 0.5 / 1.5)
    assert measured_knee([1, 2], [1.0, 1.2]) is None


def test_contended_servers_run_faster_alone_than_busy() -> None:
    from trackflow.estimation.queueing import simulate_contended_open_queue

    samples = np.full(10, 1.0)  # measured with both servers busy; alone they take 0.5 s
    quiet = simulate_contended_open_queue(0.01, samples, 2, busy_slowdown=2.0, jobs=2000)
    assert np.mean(quiet.service_s) == pytest.approx(0.5, rel=0.02)  # almost always alone
    busy = simulate_contended_open_queue(1.9, samples, 2, busy_slowdown=2.0, jobs=4000)
    assert 0.8 < np.mean(busy.service_s) <= 1.0  # mostly both busy near capacity (2 Hz)
    model = FarmModel(samples=samples, servers=2, busy_slowdown=2.0)
    assert model.latency(0.01)["p95"] == pytest.approx(0.5, rel=0.05)


def test_poisson_arrivals_stay_in_the_window() -> None:
    arrivals = poisson_arrivals(50.0, 10.0, np.random.default_rng(0))
    assert arrivals.min() >= 0 and arrivals.max() < 10.0
    assert np.all(np.diff(arrivals) > 0)
    assert 350 < len(arrivals) < 650


# --------------------------------------------------------------------------- the stream
STREAM_KEYS = {
    "rates",
    "capacity",
    "knee",
    "prediction",
    "concurrency_sweep",
    "network",
    "counts",
    "every_arrival_answered",
    "service",
    "outputs",
    "duration_s",
}
RATE_KEYS = {
    "offered_rate_hz",
    "arrivals",
    "done",
    "shed",
    "failed",
    "unanswered",
    "throughput_hz",
    "latency_s",
    "queue_s",
    "transfer_s",
    "service_s",
    "backlog",
    "predicted",
    "worker_memory",
    "counts",
}


def check_stream(stream: dict, out: Path) -> None:
    """stream.json has every field, and every arrival was answered or counted as shed."""
    written = json.loads((out / "stream.json").read_text())
    assert set(written) >= STREAM_KEYS
    assert written["every_arrival_answered"] is True
    for rate in written["rates"]:
        assert set(rate) >= RATE_KEYS
        assert rate["unanswered"] == 0
        assert rate["done"] + rate["shed"] + rate["failed"] == rate["arrivals"]
        assert rate["counts"]["submitted"] == rate["arrivals"]
        assert len(rate["backlog"]["t_s"]) == len(rate["backlog"]["queued"])
        assert {"p50", "p95", "p99"} <= set(rate["latency_s"])
        predicted = rate["predicted"]["p95"]
        assert predicted is None or predicted > 0  # None (unbounded) at or past the predicted capacity
    network = written["network"]
    assert network["client_scheduler_rtt_s"]["p50"] > 0 and network["scheduler_worker_rtt_s"]["p50"] > 0
    assert network["bytes_in_per_event"] > 0 and network["bytes_out_per_event"] > 0
    assert written["prediction"]["model"]["source"] in ("measured", "bench")
    for name in ("latency_vs_rate.png", "backlog.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stream_on_a_two_worker_local_cluster_writes_stream_json(
    client: object, events_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stream"
    stream = run_stream(
        StreamConfig(
            events_dir,
            out,
            rates=[0.5, 2.0],
            duration=3.0,
            concurrency=[1, 2],
            sweep_duration=2.0,
            calibration_events=4,
            client=client,
        )
    )
    check_stream(stream, out)
    assert [p["concurrency"] for p in stream["concurrency_sweep"]] == [1, 2]
    assert (out / "concurrency.png").is_file()
    assert stream["counts"]["pending"] == 0 and stream["counts"]["failed"] == 0


def test_stream_past_capacity_sheds_with_a_bounded_queue(
    client: object, events_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "overload"
    stream = run_stream(
        StreamConfig(
            events_dir, out, rates=[400.0], duration=2.0, calibration_events=4, max_queued=4, client=client
        )
    )
    check_stream(stream, out)
    rate = stream["rates"][0]
    assert rate["shed"] > 0  # 400 Hz is far past 2 workers' capacity (~700-hit events: 10-20 ms each)
    assert rate["backlog"]["max_queued"] <= 4


def test_stream_command_help_and_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["stream", "--help"])
    assert result.exit_code == 0 and "--rate" in result.output and "--concurrency" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(main, ["stream", str(empty), "--rate", "1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"{empty}: holds no TrackML events" in result.output


def test_public_names() -> None:
    assert trackflow.Service is Service
    assert trackflow.StreamConfig is StreamConfig
    assert callable(trackflow.run_stream)
