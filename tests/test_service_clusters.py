"""trackflow.Service over several clusters (issue 32), with real Dask (two LocalClusters of worker
processes, each its own scheduler), real torch and the shipped models: batches go to both
clusters, every request is answered exactly once, and a cluster closed mid-stream costs its
batches in flight a retry on the other, never a lost request. Behaviour only, never timings."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import gun_events, hits_of
from distributed import Client
from service_clusters_pipeline import paced_pipeline

import trackflow
from trackflow import config
from trackflow.errors import ConfigError
from trackflow.service import EventFailed, Service, ServiceConfig
from trackflow.service.clusters import least_loaded

N_REQUESTS = 12
#: s each event is held on its worker, so that batches are in flight when a cluster closes
PACE_S = 0.4


@pytest.fixture(scope="module")
def event(sim_detectors: Path, tmp_path_factory: pytest.TempPathFactory) -> trackflow.Event:
    directory = gun_events(
        tmp_path_factory, "service-clusters-events", seed=8, pileup=3, events=1, particles_per_vertex=None
    )
    return hits_of(directory)[0]


@pytest.fixture(scope="module")
def expected(event: trackflow.Event) -> np.ndarray:
    """The event's track labels from the Pipeline in this process."""
    return np.asarray(trackflow.Pipeline.load()(event).track_labels)


@pytest.fixture
def clusters() -> Iterator[list[tuple[Any, Client]]]:
    """Two local clusters of one worker process each (each its own scheduler): (cluster, client)."""
    with contextlib.ExitStack() as stack:
        handles = [
            stack.enter_context(trackflow.open_cluster("local", workers=1, threads_per_worker=1))
            for _ in range(2)
        ]
        yield [(handle.cluster, handle.client) for handle in handles]


def _config(inline_hits: int | None = None) -> ServiceConfig:
    loader = functools.partial(paced_pipeline, trackflow.Pipeline.load, PACE_S)
    return ServiceConfig(pipeline_loader=loader, inline_hits=inline_hits)


def _labels_match(tracks: trackflow.EventTracks, expected: np.ndarray) -> bool:
    return bool(np.array_equal(np.asarray(tracks.track_labels), expected))


def test_batches_go_to_both_clusters_and_each_request_is_answered_once(
    clusters: list[tuple[Any, Client]], event: trackflow.Event, expected: np.ndarray
) -> None:
    with Service([client for _, client in clusters], _config()) as service:
        assert len(service.clusters) == 2
        assert service.worker_slots() == 2  # one thread on each cluster
        futures = [service.submit(event.hits, event_id=i) for i in range(N_REQUESTS)]
        answers = [f.result(timeout=300) for f in futures]
        assert service.wait_idle(timeout=60)
        timings = service.take_timings()
        counts = service.counts()
    assert [a.event_id for a in answers] == list(range(N_REQUESTS))
    assert all(_labels_match(a, expected) for a in answers)
    # each request answered once: one timing each, no duplicate, none missing
    assert sorted(t.request_id for t in timings) == list(range(N_REQUESTS))
    assert (counts.submitted, counts.done, counts.failed, counts.pending, counts.resent) == (
        N_REQUESTS,
        N_REQUESTS,
        0,
        0,
        0,
    )
    # the least-loaded choice spread the batches: both clusters' workers answered
    schedulers = {client.scheduler.address for _, client in clusters}
    workers = {t.worker for t in timings}
    owners = {
        client.scheduler.address
        for _, client in clusters
        for address in client.scheduler_info(n_workers=-1)["workers"]
        if address in workers
    }
    assert owners == schedulers


@pytest.mark.parametrize("inline_hits", [0, None], ids=["pipeline-thread", "default"])
def test_a_cluster_closed_mid_stream_loses_no_request(
    clusters: list[tuple[Any, Client]], event: trackflow.Event, expected: np.ndarray, inline_hits: int | None
) -> None:
    # inline_hits 0: the batch on cluster b runs on its worker's pipeline thread, so closing the
    # cluster cuts the call, and the service resends it to cluster a and marks b lost. With the
    # default a short event runs on the worker's event loop, which finishes it before it reads
    # the close: the call may then simply answer; either way no request is lost
    (_, client_a), (cluster_b, client_b) = clusters
    with Service([client_a, client_b], _config(inline_hits)) as service:
        futures = [service.submit(event.hits, event_id=i) for i in range(N_REQUESTS)]
        # wait until cluster b holds a batch, then take it away under it
        deadline = time.monotonic() + 120
        while service.clusters[1].in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.clusters[1].in_flight > 0
        cluster_b.close()
        answers = [f.result(timeout=300) for f in futures]
        assert service.wait_idle(timeout=60)
        timings = service.take_timings()
        counts = service.counts()
        assert service.clusters[0].lost is None
        if inline_hits == 0:
            assert service.clusters[1].lost is not None
            assert service.worker_slots() == 1  # only cluster a counts now
    assert [a.event_id for a in answers] == list(range(N_REQUESTS))
    assert all(_labels_match(a, expected) for a in answers)
    assert sorted(t.request_id for t in timings) == list(range(N_REQUESTS))
    assert all(t.status == "done" for t in timings)
    assert counts.done == N_REQUESTS and counts.failed == 0 and counts.pending == 0
    if inline_hits == 0:
        assert counts.resent >= 1  # the batch cluster b held ran again on cluster a


def test_with_every_cluster_gone_requests_fail_and_are_counted(
    clusters: list[tuple[Any, Client]], event: trackflow.Event
) -> None:
    with Service([client for _, client in clusters], _config()) as service:
        for cluster, _ in clusters:
            cluster.close()
        futures = [service.submit(event.hits, event_id=i) for i in range(3)]
        errors = [f.exception(timeout=120) for f in futures]
        assert service.wait_idle(timeout=60)
        counts = service.counts()
    assert all(isinstance(e, EventFailed) for e in errors)
    assert all("no cluster left" in str(e) for e in errors)
    assert (counts.submitted, counts.failed, counts.pending) == (3, 3, 0)


def test_least_loaded_prefers_the_emptier_share_and_skips_lost_clusters(
    clusters: list[tuple[Any, Client]],
) -> None:
    from trackflow.service.clusters import ServiceCluster

    a = ServiceCluster(0, clusters[0][1], slots=4, in_flight=2)
    b = ServiceCluster(1, clusters[1][1], slots=1, in_flight=1)
    assert least_loaded([a, b], tasks_per_slot=1) is a  # 2/4 busy against 1/1
    a.mark_lost("test")
    assert least_loaded([a, b], tasks_per_slot=1) is b
    b.mark_lost("test")
    assert least_loaded([a, b], tasks_per_slot=1) is None


def test_a_service_needs_a_client() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        Service([])


def test_the_setting_adds_clusters_to_service_open(event: trackflow.Event, expected: np.ndarray) -> None:
    # trackflow serve opens its service with Service.open: a config file spans several clusters
    with (
        config.set(**{"service.more_clusters": ["local"]}),
        Service.open("local", workers=1, config=_config()) as service,
    ):
        assert len(service.handles) == 2 and len(service.clusters) == 2
        assert service.handles[0].scheduler_address != service.handles[1].scheduler_address
        tracks = service.submit(event.hits, event_id=7).result(timeout=300)
    assert tracks.event_id == 7 and _labels_match(tracks, expected)
