"""Actor dispatch (``service.dispatch: actor``, :mod:`trackflow.service.actors`): one pipeline
actor per worker, called straight from the client. Real LocalCluster, real worker processes,
real SIGKILL; the shipped models. The same tracks as the Pipeline and as the task dispatch; a
worker that dies while idle costs nothing but its actor, which comes back with the restarted
worker; a bad setting is one clear error. Behaviour only, never timings."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import gun_events, hits_of

import trackflow
from trackflow.errors import ConfigError
from trackflow.service import Service, ServiceConfig
from trackflow.service.actors import ActorPool, WorkerActor
from trackflow.service.clusters import ServiceCluster


@pytest.fixture(scope="module")
def events(sim_detectors: Path, tmp_path_factory: pytest.TempPathFactory) -> list[trackflow.Event]:
    return hits_of(gun_events(tmp_path_factory, "serve-actor-events", seed=11, pileup=3, events=3))


@pytest.fixture(scope="module")
def handle() -> Iterator[Any]:
    with trackflow.open_cluster("local", workers=2, threads_per_worker=1) as cluster:
        yield cluster


def _actors(service: Service) -> int:
    assert service.actors is not None
    return len(service.actors._actors)


def test_actor_and_task_dispatch_give_the_pipelines_tracks(handle: Any, events: list) -> None:
    expected = [trackflow.Pipeline.load()(event) for event in events]
    client = handle.client
    for dispatch in ("actor", "task"):
        with Service(client, ServiceConfig(dispatch=dispatch, calls_per_slot=1)) as service:
            # one actor per worker, ready when the service is; none for the task dispatch
            assert (service.actors is not None) == (dispatch == "actor")
            if dispatch == "actor":
                # ready at start as a rule; on a loaded machine an actor (its worker loading the
                # models) may join through the service's watch a little later
                deadline = time.monotonic() + 120
                while _actors(service) < 2 and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert _actors(service) == 2 and service._in_flight_limit() == 2
            got = [f.result(timeout=300) for f in service.map(events * 2)]
            timings = service.take_timings()
            counts = service.counts()
        for tracks, want in zip(got, expected * 2, strict=True):
            assert tracks.event_id == want.event_id
            np.testing.assert_array_equal(tracks.track_labels, want.track_labels)
        assert (counts.done, counts.failed, counts.pending, counts.resent) == (6, 0, 0, 0)
        assert all(t.worker and t.service_s > 0 for t in timings)


def test_a_dead_idle_worker_loses_no_request_and_its_actor_comes_back(handle: Any, events: list) -> None:
    client = handle.client
    expected = [trackflow.Pipeline.load()(event).track_labels for event in events]
    with Service(client, ServiceConfig(dispatch="actor")) as service:
        assert _actors(service) == 2
        pids = client.run(os.getpid)
        victim = sorted(pids)[0]
        os.kill(pids[victim], signal.SIGKILL)
        # sent at once: some may reach the dead worker's actor before the service notices
        futures = service.map(events * 3)
        for future, want in zip(futures, expected * 3, strict=True):
            np.testing.assert_array_equal(future.result(timeout=300).track_labels, want)
        # the nanny restarts the worker (a new address): the service gives it an actor
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            addresses = {a for _, a in service.actors._actors} if service.actors else set()
            if len(addresses) == 2 and victim not in addresses:
                break
            time.sleep(0.2)
        assert len(addresses) == 2 and victim not in addresses
        again = service.map(events)
        for future, want in zip(again, expected, strict=True):
            np.testing.assert_array_equal(future.result(timeout=300).track_labels, want)
        counts = service.counts()
    assert counts.failed == 0 and counts.pending == 0 and counts.done == len(events) * 4


def test_staged_mode_runs_as_tasks_and_a_bad_dispatch_is_refused(handle: Any, events: list) -> None:
    with pytest.raises(ConfigError, match=r"service\.dispatch 'rpc'"):
        ServiceConfig(dispatch="rpc")
    client = handle.client
    with Service(client, ServiceConfig(dispatch="actor", mode="staged")) as service:
        assert service.actors is None  # a task per stage: Dask chains them
        assert service.submit(events[0]).result(timeout=300).event_id == events[0].event_id


def test_a_call_waits_on_the_busy_worker_whose_call_is_oldest(handle: Any) -> None:
    # the pool's choice alone (real clusters' clients, no calls): free threads first, then,
    # with 2 calls per thread, the worker whose running call was sent first; then none
    cluster = ServiceCluster(0, handle.client)
    pool = ActorPool("no-plugin", "test", calls_per_slot=2)
    first, second = (WorkerActor(cluster, f"tcp://worker-{n}", f"actor-{n}", 1, None) for n in "ab")
    pool._actors = {(0, first.address): first, (0, second.address): second}
    assert pool.pick() is first and pool.pick() is second  # a free worker each
    assert pool.pick() is first  # both busy: first's call is the older one
    assert pool.pick() is second
    assert pool.pick() is None  # two calls per thread at most
    pool.done(first)
    assert pool.pick() is first
    assert pool.pick(busy_too=True) is second  # a call whose worker died: even past the limit


def test_two_calls_per_slot_give_the_same_tracks(handle: Any, events: list) -> None:
    expected = [trackflow.Pipeline.load()(event).track_labels for event in events]
    with Service(handle.client, ServiceConfig(dispatch="actor", calls_per_slot=2)) as service:
        assert service._in_flight_limit() == 4  # 2 workers of 1 thread, 2 calls each
        futures = service.map(events * 3)
        for future, want in zip(futures, expected * 3, strict=True):
            np.testing.assert_array_equal(future.result(timeout=300).track_labels, want)
    with pytest.raises(ConfigError, match=r"service\.calls_per_slot 0"):
        ServiceConfig(calls_per_slot=0)


def test_auto_calls_per_slot_lets_a_call_wait_on_a_lone_worker_or_under_a_deep_backlog(
    handle: Any,
) -> None:
    # service.calls_per_slot: auto (the default): with one worker a second call waits on it (no
    # other worker could take it sooner); with two, calls wait on the client for a free worker
    # unless the service holds 2 events per worker thread (then each thread takes one as it frees)
    assert ServiceConfig().calls_per_slot == "auto"
    cluster = ServiceCluster(0, handle.client)
    pool = ActorPool("no-plugin", "test", calls_per_slot="auto")
    first, second = (WorkerActor(cluster, f"tcp://worker-{n}", f"actor-{n}", 1, None) for n in "ab")
    pool._actors = {(0, first.address): first}
    assert pool.per_slot() == 2
    assert pool.pick() is first and pool.pick() is first and pool.pick() is None
    pool.done(first)
    pool.done(first)
    pool._actors[(0, second.address)] = second
    assert pool.per_slot() == 1
    assert pool.pick() is not None and pool.pick() is not None and pool.pick() is None
    assert pool.per_slot(held=3) == 1  # 2 running, 1 waiting: it goes to the first that frees
    assert pool.pick(held=3) is None
    assert pool.per_slot(held=4) == 2  # 2 running, 2 waiting: one waits on each worker
    picked = [pool.pick(held=4), pool.pick(held=4)]
    assert sorted(a.address for a in picked if a is not None) == [first.address, second.address]
    assert pool.pick(held=4) is None
    with pytest.raises(ConfigError, match=r"service\.calls_per_slot 'two'"):
        ServiceConfig(calls_per_slot="two")


def _thread_name(pipeline: Any, *, worker: str) -> str:
    # run on a worker by the actor (imported there by reference, from this module)
    import threading

    return threading.current_thread().name


def test_a_short_call_runs_on_the_workers_event_loop_and_a_long_one_on_the_pipelines_thread(
    handle: Any, events: list
) -> None:
    # service.inline_hits: a batch of few hits runs on the one-thread worker's event loop (no
    # thread hop each way); a bigger one on the pipeline's thread, leaving the loop free
    with Service(handle.client, ServiceConfig(dispatch="actor", inline_hits=10**6)) as service:
        assert service.actors is not None and service.config.inline_hits == 10**6
        actor = service.actors.pick()
        assert actor is not None
        on_loop = service.actors.call(actor, _thread_name, inline=True).result(timeout=60)
        on_thread = service.actors.call(actor, _thread_name).result(timeout=60)
        service.actors.done(actor)
        assert on_loop == "MainThread" and on_thread.startswith("trackflow-actor")
        expected = [trackflow.Pipeline.load()(event).track_labels for event in events]
        for future, want in zip(service.map(events), expected, strict=True):
            np.testing.assert_array_equal(future.result(timeout=300).track_labels, want)
    with pytest.raises(ConfigError, match=r"service\.inline_hits -1"):
        ServiceConfig(inline_hits=-1)
