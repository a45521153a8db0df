"""``trackflow serve`` with a worker killed mid-request (issue 30): the request is answered, never
left hanging. Real LocalCluster, real SIGKILL of the worker process running the event, the real
tritonclient. Once killed: Dask runs the task again on the other worker and the client gets the
pipeline's tracks. Killed on every worker it reaches: the client gets an error naming the lost
worker, and the server goes on serving. Both dispatches (``service.dispatch``): a Dask task, and
a call to the pipeline actor of a free worker (sent to another worker's actor when its worker
dies, and failed as Dask's KilledWorker after as many deaths as a task)."""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient  # pinned in the test extra: missing fails, never skips
from conftest import gun_events, hits_of
from serve_faults import slow_pipeline
from tritonclient.utils import InferenceServerException

import trackflow
from trackflow.service import Service, ServiceConfig
from trackflow.service.kserve import KServeServer, ServeConfig
from trackflow.service.protocol import INPUTS

SLOW_EVENT = 4242
NUMPY = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32}


@pytest.fixture(scope="module")
def event(sim_detectors: Path, tmp_path_factory: pytest.TempPathFactory) -> trackflow.Event:
    directory = gun_events(
        tmp_path_factory, "serve-fault-events", seed=8, pileup=3, events=1, particles_per_vertex=None
    )
    return hits_of(directory)[0]


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slow-event-pids")


@pytest.fixture(scope="module", params=["actor", "task"])
def server(markers: Path, request: pytest.FixtureRequest) -> Iterator[KServeServer]:
    loader = functools.partial(slow_pipeline, trackflow.Pipeline.load, SLOW_EVENT, 6.0, str(markers))
    config = ServiceConfig(pipeline_loader=loader, dispatch=request.param)
    with (
        Service.open("local", workers=2, config=config) as service,
        KServeServer(service, ServeConfig(http_port=0, grpc=False)) as server,
    ):
        yield server


def infer(server: KServeServer, hits: object, event_id: int) -> np.ndarray:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=300)
    try:
        inputs = []
        for name, types in INPUTS.items():
            values = hits[name].to_numpy().astype(NUMPY[types[0]])  # type: ignore[index]
            tensor = httpclient.InferInput(name, list(values.shape), types[0])
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
        return client.infer("trackflow", inputs, parameters={"event_id": event_id}).as_numpy("track_id")
    finally:
        client.close()


def kill_workers_running_the_slow_event(markers: Path, kills: int, timeout_s: float = 120.0) -> list[int]:
    """SIGKILL the worker process that announces the slow event, ``kills`` times in a row."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout_s
    while len(killed) < kills and time.monotonic() < deadline:
        for marker in markers.iterdir():
            pid = int(marker.name)
            marker.unlink()
            if pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    assert len(killed) == kills, f"killed {killed}, wanted {kills} kills"
    return killed


@pytest.mark.slow
def test_a_worker_killed_mid_request_still_answers_with_the_tracks(
    server: KServeServer, markers: Path, event: trackflow.Event
) -> None:
    expected = trackflow.Pipeline.load()(event).track_labels
    for stale in markers.iterdir():  # an earlier test's rerun announced itself too
        stale.unlink()
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(infer, server, event.hits, SLOW_EVENT)
        kill_workers_running_the_slow_event(markers, kills=1)
        got = answer.result(timeout=300)  # Dask ran it again on the other worker
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_an_event_that_kills_every_worker_is_answered_with_an_error(
    server: KServeServer, markers: Path, event: trackflow.Event
) -> None:
    for stale in markers.iterdir():  # an earlier test's rerun announced itself too
        stale.unlink()
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(infer, server, event.hits, SLOW_EVENT)
        kill_workers_running_the_slow_event(markers, kills=2)
        with pytest.raises(InferenceServerException) as caught:
            answer.result(timeout=300)
    assert caught.value.status() == "500"
    # Dask's KilledWorker, as the service reports it: which event, and that its workers died
    assert "event 4242 failed in task" in caught.value.message()
    assert "on 2 different workers" in caught.value.message()
    # the nannies restart their workers: the next request is served
    expected = trackflow.Pipeline.load()(event).track_labels
    np.testing.assert_array_equal(infer(server, event.hits, 1), expected)


@pytest.mark.slow
def test_a_lone_worker_killed_with_a_call_waiting_on_it_answers_both(
    markers: Path, event: trackflow.Event
) -> None:
    # service.calls_per_slot auto: one worker takes a second call while it runs the first; the
    # worker dies: both are answered with the pipeline's tracks once the nanny has restarted it
    loader = functools.partial(slow_pipeline, trackflow.Pipeline.load, SLOW_EVENT, 6.0, str(markers))
    config = ServiceConfig(pipeline_loader=loader, dispatch="actor", calls_per_slot="auto")
    expected = trackflow.Pipeline.load()(event).track_labels
    for stale in markers.iterdir():
        stale.unlink()
    with (
        Service.open("local", workers=1, config=config) as service,
        KServeServer(service, ServeConfig(http_port=0, grpc=False)) as server,
        ThreadPoolExecutor(2) as pool,
    ):
        assert service.actors is not None and service.actors.per_slot() == 2
        slow = pool.submit(infer, server, event.hits, SLOW_EVENT)
        deadline = time.monotonic() + 60
        while not any(markers.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = pool.submit(infer, server, event.hits, 1)
        actor = next(iter(service.actors._actors.values()))
        while actor.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert actor.in_flight == 2  # the second call waits on the busy worker
        kill_workers_running_the_slow_event(markers, kills=1)
        np.testing.assert_array_equal(waiting.result(timeout=300), expected)
        np.testing.assert_array_equal(slow.result(timeout=300), expected)
        counts = service.counts()
    assert (counts.done, counts.failed, counts.pending) == (2, 0, 0)
