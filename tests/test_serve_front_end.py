"""``trackflow serve``'s front end on the Dask client's event loop (``service.front_end_loop:
client``) with actor dispatch: the real tritonclient against a real LocalCluster and the shipped
models. The pipeline's tracks; a bad request answered with its one-line error while the server
keeps serving; stopping the front end leaves the client's loop (and the service) running; a
``block`` queue keeps the front end on its own loop. The protocol's hits frame carries the
derived columns exactly as ``with_derived`` computes them. Behaviour only, never timings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient  # pinned in the test extra: missing fails, never skips
from conftest import gun_events, hits_of
from tritonclient.utils import InferenceServerException

import trackflow
from trackflow.errors import ConfigError
from trackflow.events.event import with_derived
from trackflow.service import Service, ServiceConfig
from trackflow.service.kserve import KServeServer, ServeConfig
from trackflow.service.protocol import INPUTS, hits_from_tensors

NUMPY = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32}


@pytest.fixture(scope="module")
def events(sim_detectors: Path, tmp_path_factory: pytest.TempPathFactory) -> list[trackflow.Event]:
    return hits_of(gun_events(tmp_path_factory, "serve-front-end-events", seed=13, pileup=3, events=2))


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    config = ServiceConfig(dispatch="actor", front_end_loop="client")
    with Service.open("local", workers=2, config=config) as service:
        yield service


def inputs(hits: pd.DataFrame, x_type: str = "FP32") -> list[httpclient.InferInput]:
    tensors = []
    for name, accepted in INPUTS.items():
        datatype = x_type if name == "x" else accepted[0]
        values = hits[name].to_numpy().astype(NUMPY[datatype])
        tensor = httpclient.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values)
        tensors.append(tensor)
    return tensors


def test_a_front_end_on_the_clients_loop_answers_and_stops_cleanly(service: Service, events: list) -> None:
    expected = [trackflow.Pipeline.load()(event).track_labels for event in events]
    with KServeServer(service, ServeConfig(http_port=0, grpc=False)) as server:
        assert server.on_client_loop and server._thread is None  # no thread of its own
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=300)
        try:
            assert client.is_server_ready()
            for event, want in zip(events, expected, strict=True):
                got = client.infer("trackflow", inputs(event.hits)).as_numpy("track_id")
                np.testing.assert_array_equal(got, want)
            with pytest.raises(InferenceServerException, match="input 'x': datatype 'INT64'"):
                client.infer("trackflow", inputs(events[0].hits, x_type="INT64"))
            got = client.infer("trackflow", inputs(events[1].hits)).as_numpy("track_id")
            np.testing.assert_array_equal(got, expected[1])  # still serving
        finally:
            client.close()
        assert server.counts == {"requests": 4, "answered": 3, "errors": 1}
    # the front end is gone, the client's loop is not: the service still answers
    assert service.client.status == "running"
    np.testing.assert_array_equal(service.submit(events[0]).result(timeout=300).track_labels, expected[0])


def test_a_blocking_queue_keeps_the_front_end_on_its_own_loop(service: Service) -> None:
    config = ServiceConfig(front_end_loop="client", queue_policy="block")
    with (
        Service(service.client, config) as blocking,
        KServeServer(blocking, ServeConfig(http_port=0, grpc=False)) as server,
    ):
        assert not server.on_client_loop and server._thread is not None
    with pytest.raises(ConfigError, match=r"service\.front_end_loop 'tornado'"):
        ServiceConfig(front_end_loop="tornado")


def test_the_protocols_derived_columns_are_with_deriveds(events: list) -> None:
    hits = events[0].hits
    tensors = {name: hits[name].to_numpy().astype(NUMPY[types[0]]) for name, types in INPUTS.items()}
    tensors["x"][0] = tensors["y"][0] = 0.0  # r = 0: eta 0, as with_derived has it
    frame = hits_from_tensors(tensors, None)
    pd.testing.assert_frame_equal(frame, with_derived(frame[list(INPUTS)]))


def test_the_protocols_hits_frame_is_the_public_constructors(events: list) -> None:
    # built from its arrays with shared column labels (protocol.hits_frame): the frame
    # pd.DataFrame builds from the same columns, owning its arrays (not views of the request)
    hits = events[0].hits
    tensors = {name: hits[name].to_numpy().astype(NUMPY[types[0]]) for name, types in INPUTS.items()}
    frame = hits_from_tensors(tensors, None)
    public = pd.DataFrame({name: frame[name].to_numpy() for name in frame.columns})
    pd.testing.assert_frame_equal(frame, public, check_column_type=False)
    assert list(frame.columns) == [*INPUTS, "r", "phi", "eta"]
    column = frame["x"].to_numpy()
    assert not np.shares_memory(column, tensors["x"])
    # an event's frame pickles and comes back equal (the actor call sends it pickled)
    import pickle

    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(frame, protocol=5)), frame)


def test_an_answer_reaches_the_front_end_from_its_loop_and_from_another_thread() -> None:
    # kserve._on_this_loop: the service's concurrent future as the front end awaits it
    import asyncio
    import threading
    from concurrent.futures import Future

    from trackflow.service.kserve import _on_this_loop

    async def main() -> None:
        here: Future = Future()
        waiter = _on_this_loop(here)
        here.set_result(1)  # answered on the loop's own thread: handed over at once
        assert waiter.done() and waiter.result() == 1
        there: Future = Future()
        waiter = _on_this_loop(there)
        threading.Thread(target=there.set_exception, args=(ValueError("bad hits"),)).start()
        with pytest.raises(ValueError, match="bad hits"):
            await waiter
        late: Future = Future()
        waiter = _on_this_loop(late)
        waiter.cancel()  # the request timed out (504): the answer that comes later is dropped
        late.set_result(2)
        await asyncio.sleep(0)

    asyncio.run(main())
