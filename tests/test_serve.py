"""``trackflow serve`` (issue 30): trackflow.Service behind the KServe v2 / Triton protocol, called
with the real ``tritonclient`` over HTTP, on a real LocalCluster with the shipped models. The
tracks equal ``trackflow reconstruct``'s; every bad request gets an error naming its problem, and
the server keeps serving. Behaviour only, never timings."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient  # pinned in the test extra: missing fails, never skips
from conftest import gun_events
from tritonclient.utils import InferenceServerException

import trackflow
from trackflow.errors import ConfigError
from trackflow.service import Service, ServiceConfig
from trackflow.service.kserve import KServeServer, ServeConfig
from trackflow.service.protocol import INPUTS, ProtocolError, parse_infer_request

N_EVENTS = 3
NUMPY = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP64": np.float64}


@pytest.fixture(scope="module")
def events_dir(sim_detectors: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small particle-gun events (ACTS, ~700 hits each)."""
    return gun_events(tmp_path_factory, "serve-events", seed=5, pileup=5, events=N_EVENTS)


@pytest.fixture(scope="module")
def events(events_dir: Path) -> list[trackflow.Event]:
    return [ref.load(("hits",)) for ref in trackflow.list_events(events_dir)]


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with Service.open("local", workers=2, config=ServiceConfig()) as service:
        yield service


@pytest.fixture(scope="module")
def server(service: Service) -> Iterator[KServeServer]:
    config = ServeConfig(http_port=0, grpc_port=0, max_request_bytes=2_000_000)
    with KServeServer(service, config) as server:
        yield server


@pytest.fixture
def client(server: KServeServer) -> Iterator[object]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=300)
    yield client
    client.close()


def hit_inputs(hits: pd.DataFrame, binary: bool = True, **datatypes: str) -> list[object]:
    """tritonclient inputs for a hits frame, each in its declared datatype unless overridden."""
    inputs = []
    for name, accepted in INPUTS.items():
        datatype = datatypes.get(name, accepted[0])
        values = hits[name].to_numpy().astype(NUMPY[datatype])
        tensor = httpclient.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def same_tracks(labels: np.ndarray, expected: np.ndarray) -> None:
    """The same hits grouped into the same tracks (the label numbers may differ: reconstruct
    labels a batch of events fused into one graph)."""
    np.testing.assert_array_equal(pd.factorize(labels)[0], pd.factorize(expected)[0])


def infer_tracks(client: object, hits: pd.DataFrame, binary: bool = True, **kw: object) -> np.ndarray:
    outputs = [httpclient.InferRequestedOutput("track_id", binary_data=binary)]
    result = client.infer("trackflow", hit_inputs(hits, binary), outputs=outputs, **kw)  # type: ignore[attr-defined]
    return result.as_numpy("track_id")


def test_health_ready_and_metadata(client: object) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("trackflow")
    metadata = client.get_model_metadata("trackflow")
    assert metadata["name"] == "trackflow"
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {
        "hit_id": "INT64",
        "x": "FP32",
        "y": "FP32",
        "z": "FP32",
        "volume_id": "INT32",
        "layer_id": "INT32",
        "module_id": "INT32",
    }
    assert metadata["outputs"] == [{"name": "track_id", "datatype": "INT64", "shape": [-1]}]
    assert client.get_model_config("trackflow")["name"] == "trackflow"
    assert not client.is_model_ready("other")


def test_tracks_equal_reconstruct(
    client: object, service: Service, events: list, events_dir: Path, tmp_path: Path
) -> None:
    """The same events through trackflow reconstruct (on the same cluster) and through the
    server, binary and JSON encodings: the same track of every hit."""
    report = trackflow.reconstruct(
        trackflow.ReconstructConfig(events_dir, tmp_path / "out", client=service.client, progress=False)
    )
    assert report.exit_code == 0
    submission = pd.read_csv(tmp_path / "out" / "submission.csv")
    for event in events:
        want = submission[submission["event_id"] == event.event_id].set_index("hit_id")["track_id"]
        binary = infer_tracks(client, event.hits, binary=True, parameters={"event_id": event.event_id})
        as_json = infer_tracks(client, event.hits, binary=False)
        expected = want.reindex(event.hits["hit_id"].to_numpy()).to_numpy()
        same_tracks(binary, expected)
        np.testing.assert_array_equal(as_json, binary)
    # the hits in another order: track_id follows hit_id
    shuffled = events[0].hits.sample(frac=1.0, random_state=2)
    got = pd.Series(infer_tracks(client, shuffled), index=shuffled["hit_id"].to_numpy())
    unshuffled = infer_tracks(client, events[0].hits)
    same_tracks(got.reindex(events[0].hits["hit_id"]).to_numpy(), unshuffled)


def test_int64_detector_ids_are_accepted(client: object, events: list) -> None:
    hits = events[0].hits
    outputs = [httpclient.InferRequestedOutput("track_id")]
    wide = hit_inputs(hits, volume_id="INT64", layer_id="INT64", module_id="INT64")
    got = client.infer("trackflow", wide, outputs=outputs).as_numpy("track_id")
    np.testing.assert_array_equal(got, infer_tracks(client, hits))


def _bad_inputs(hits: pd.DataFrame, case: str) -> list[object]:
    if case == "wrong datatype":
        return hit_inputs(hits, x="FP64")
    inputs = hit_inputs(hits)
    if case == "missing input":
        return [i for i in inputs if i.name() != "module_id"]
    if case == "two dimensions":
        values = hits["z"].to_numpy(np.float32).reshape(-1, 1)
        z = httpclient.InferInput("z", list(values.shape), "FP32")
        z.set_data_from_numpy(values)
        return [z if i.name() == "z" else i for i in inputs]
    if case == "lengths differ":
        values = hits["y"].to_numpy(np.float32)[:-1]
        y = httpclient.InferInput("y", list(values.shape), "FP32")
        y.set_data_from_numpy(values)
        return [y if i.name() == "y" else i for i in inputs]
    if case == "not finite":
        bad = hits.copy()
        bad.loc[bad.index[3], "x"] = np.nan
        return hit_inputs(bad)
    if case == "unknown input":
        extra = httpclient.InferInput("charge", [1], "FP32")
        extra.set_data_from_numpy(np.zeros(1, np.float32))
        return [*inputs, extra]
    raise AssertionError(case)


BAD_REQUESTS = {
    "wrong datatype": "input 'x': datatype 'FP64', expected FP32",
    "missing input": "missing input(s) module_id",
    "two dimensions": "input 'z': shape",
    "lengths differ": "inputs differ in length",
    "not finite": "input 'x': 1 value(s) are not finite",
    "unknown input": "unexpected input 'charge'",
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_a_bad_request_is_named_and_the_server_keeps_serving(client: object, events: list, case: str) -> None:
    hits = events[0].hits
    with pytest.raises(InferenceServerException) as caught:
        client.infer("trackflow", _bad_inputs(hits, case))
    assert BAD_REQUESTS[case] in caught.value.message()
    assert caught.value.status() == "400"
    assert len(infer_tracks(client, hits)) == len(hits)  # still serving


def _post(
    server: KServeServer, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_garbage_oversize_and_unknown_model_are_answered(
    server: KServeServer, client: object, events: list
) -> None:
    status, answer = _post(server, "/v2/models/trackflow/infer", b"\x00\xffnot json at all")
    assert status == 400
    assert "JSON header does not parse" in answer["error"]
    status, answer = _post(
        server, "/v2/models/trackflow/infer", b"{}", {"Inference-Header-Content-Length": "999"}
    )
    assert status == 400
    assert "Inference-Header-Content-Length 999" in answer["error"]
    big = b"x" * 3_000_000  # the fixture's limit is 2,000,000 bytes
    status, answer = _post(server, "/v2/models/trackflow/infer", big)
    assert status == 413
    assert "3000000 bytes exceeds serve.max_request_bytes (2000000)" in answer["error"]
    status, answer = _post(server, "/v2/models/other/infer", b"{}")
    assert status == 404
    assert "unknown model 'other'" in answer["error"]
    status, answer = _post(server, "/v2/elsewhere", b"")
    assert status == 404
    assert "error" in answer
    assert len(infer_tracks(client, events[0].hits)) == len(events[0].hits)


def test_the_protocol_refuses_what_it_cannot_read() -> None:
    """Without a server: the checks that the tritonclient cannot send wrong."""

    def body(**change: object) -> bytes:
        inputs = [{"name": n, "datatype": t[0], "shape": [2], "data": [1, 2]} for n, t in INPUTS.items()]
        request: dict[str, object] = {"inputs": inputs, **change}
        return json.dumps(request).encode()

    assert len(parse_infer_request(body()).hits) == 2
    cases = {
        b"[1, 2]": "JSON header is not an object",
        body(inputs=[]): "no 'inputs' list",
        body(outputs=[{"name": "labels"}]): "unexpected output 'labels'",
        body(parameters={"event_id": "seven"}): "parameter 'event_id'",
    }
    for raw, message in cases.items():
        with pytest.raises(ProtocolError, match=re.escape(message)):
            parse_infer_request(raw)
    one = json.dumps(
        {"inputs": [{"name": n, "datatype": t[0], "shape": [1], "data": [1]} for n, t in INPUTS.items()]}
    ).encode()
    with pytest.raises(ProtocolError, match=r"more than serve\.max_hits"):
        parse_infer_request(body(), max_hits=1)
    with pytest.raises(ProtocolError, match="binary_data_size 8 runs past the end"):
        header = json.loads(one)
        header["inputs"][0] = {
            "name": "hit_id",
            "datatype": "INT64",
            "shape": [1],
            "parameters": {"binary_data_size": 8},
        }
        raw = json.dumps(header).encode()
        parse_infer_request(raw + b"\x01", header_length=len(raw))
    with pytest.raises(ProtocolError, match="repeat"):
        parse_infer_request(
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": n,
                            "datatype": t[0],
                            "shape": [2],
                            "data": [1, 1] if n == "hit_id" else [1, 2],
                        }
                        for n, t in INPUTS.items()
                    ]
                }
            ).encode()
        )


def test_serve_config_refuses_half_tls() -> None:
    with pytest.raises(ConfigError, match=r"tls_cert and serve\.tls_key"):
        ServeConfig(tls_cert=Path("cert.pem"))


def test_the_serve_command_answers_and_stops_on_sigterm(events: list) -> None:
    """``trackflow serve`` as a user starts it (its own LocalCluster), one request, then SIGTERM:
    it says where it listens and, on the way out, what it answered."""
    command = [
        sys.executable,
        "-m",
        "trackflow",
        "serve",
        "--workers",
        "1",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
    ]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ}) as process:
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            match = re.search(r"serving model trackflow on http://127\.0\.0\.1:(\d+)", line)
            assert match, line
            client = httpclient.InferenceServerClient(f"127.0.0.1:{match.group(1)}", network_timeout=300)
            try:
                assert len(infer_tracks(client, events[1].hits)) == len(events[1].hits)
            finally:
                client.close()
            process.send_signal(signal.SIGTERM)
            rest = process.stderr.read()
            assert process.wait(timeout=120) == 0, rest
            assert "requests: 1, answered 1, errors 0; events done 1" in rest
        finally:
            if process.poll() is None:
                process.kill()


def test_grpc_round_trip_and_a_bad_request(server: KServeServer, client: object, events: list) -> None:
    """The same model over gRPC (tritonclient.grpc): metadata, the HTTP answer's tracks, a bad
    request named (and the server goes on)."""
    import tritonclient.grpc as grpcclient

    channel = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        assert channel.is_server_live()
        assert channel.is_server_ready()
        assert channel.is_model_ready("trackflow")
        assert [i.name for i in channel.get_model_metadata("trackflow").inputs] == list(INPUTS)

        def grpc_inputs(hits: pd.DataFrame, **datatypes: str) -> list[object]:
            inputs = []
            for name, accepted in INPUTS.items():
                datatype = datatypes.get(name, accepted[0])
                values = hits[name].to_numpy().astype(NUMPY[datatype])
                tensor = grpcclient.InferInput(name, list(values.shape), datatype)
                tensor.set_data_from_numpy(values)
                inputs.append(tensor)
            return inputs

        hits = events[2].hits
        got = channel.infer("trackflow", grpc_inputs(hits)).as_numpy("track_id")
        np.testing.assert_array_equal(got, infer_tracks(client, hits))
        with pytest.raises(InferenceServerException, match="input 'x': datatype 'FP64', expected FP32"):
            channel.infer("trackflow", grpc_inputs(hits, x="FP64"))
        with pytest.raises(InferenceServerException, match="unknown model 'other'"):
            channel.get_model_metadata("other")
        np.testing.assert_array_equal(channel.infer("trackflow", grpc_inputs(hits)).as_numpy("track_id"), got)
    finally:
        channel.close()


def test_staged_mode_gives_the_fused_tracks(service: Service, client: object, events: list) -> None:
    """``--mode staged``: a Dask task per stage, chained; the same tracks as the fused service."""
    staged = Service(service.client, ServiceConfig(mode="staged"))
    try:
        with KServeServer(staged, ServeConfig(http_port=0, grpc=False)) as server:
            channel = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=300)
            try:
                for event in events:
                    np.testing.assert_array_equal(
                        infer_tracks(channel, event.hits), infer_tracks(client, event.hits)
                    )
            finally:
                channel.close()
        assert staged.counts().done == len(events)
    finally:
        staged.close()
    with pytest.raises(ConfigError, match="choose one of fused, staged"):
        ServiceConfig(mode="direct")


def test_https_with_the_given_certificate(service: Service, events: list, tmp_path: Path) -> None:
    """``--tls-cert/--tls-key``: the same model over HTTPS (a self-signed certificate here; the
    client trusts exactly it)."""
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    config = ServeConfig(http_port=0, grpc=False, tls_cert=cert, tls_key=key)
    with KServeServer(service, config) as server:
        assert server.url.startswith("https://")

        def trusting() -> ssl.SSLContext:
            return ssl.create_default_context(cafile=str(cert))

        channel = httpclient.InferenceServerClient(
            f"127.0.0.1:{server.http_port}", ssl=True, ssl_context_factory=trusting, network_timeout=300
        )
        try:
            assert channel.is_server_live()
            assert len(infer_tracks(channel, events[0].hits)) == len(events[0].hits)
        finally:
            channel.close()
        # a client speaking plain HTTP to it gets no answer, and the server goes on
        status = None
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            status = _post(server, "/v2/health/live", b"")[0]
        assert status is None or status >= 400
