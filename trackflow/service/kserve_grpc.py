"""``trackflow serve``'s gRPC endpoint: the KServe v2 / Triton ``GRPCInferenceService``.

The service definition and its message classes are tritonclient's own generated code
(``tritonclient.grpc.service_pb2``), so the wire format is Triton's; grpcio serves it. Only the
calls a client needs to find and use the model are answered (``ServerLive``, ``ServerReady``,
``ServerMetadata``, ``ModelReady``, ``ModelMetadata``, ``ModelInfer``); the others (shared memory,
repository control, statistics) answer UNIMPLEMENTED, as a Triton without them would.

Requests are checked as over HTTP (:mod:`trackflow.service.protocol`); a bad one is answered with
its gRPC status (INVALID_ARGUMENT, NOT_FOUND) and the one-line message, a full queue UNAVAILABLE,
a failed event INTERNAL, no tracks within ``serve.request_timeout_s`` DEADLINE_EXCEEDED. A body
over ``serve.max_request_bytes`` is refused by grpcio itself (RESOURCE_EXHAUSTED, naming both
sizes). Each request in flight holds one of ``serve.grpc_threads`` threads while it waits.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from trackflow.errors import ConfigError, TrackflowError
from trackflow.service import protocol
from trackflow.service.batcher import ServiceClosed, ServiceOverloaded
from trackflow.service.protocol import (
    MODEL_NAME,
    MODEL_VERSION,
    OUTPUT,
    OUTPUT_DATATYPE,
    ProtocolError,
    check_model,
)

if TYPE_CHECKING:
    from trackflow.service.serve_config import ServeConfig
    from trackflow.service.service import Service

logger = logging.getLogger(__name__)

#: where each datatype's values sit in InferTensorContents
_CONTENTS = {"INT64": "int64_contents", "INT32": "int_contents", "FP32": "fp32_contents"}
_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
}


def _tensors(request: Any) -> dict[str, np.ndarray]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    tensors: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        shape = protocol.check_input(tensor.name, tensor.datatype, [int(d) for d in tensor.shape], tensors)
        if raw:
            values = protocol.tensor_from_bytes(tensor.name, tensor.datatype, raw[index])
        else:
            field = _CONTENTS[tensor.datatype]
            values = np.asarray(getattr(tensor.contents, field), dtype=protocol.DTYPES[tensor.datatype])
        if values.size != shape[0]:
            raise ProtocolError(f"input {tensor.name!r}: shape {shape} but {values.size} values")
        tensors[tensor.name] = values
    return tensors


class _Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: Service, config: ServeConfig) -> None:
        self.service = service
        self.config = config

    def _check_model(self, name: str, model_version: str, context: Any) -> None:
        try:
            check_model(name, model_version)
        except ProtocolError as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error))

    def _ready(self) -> bool:
        try:
            return self.service.connected_workers() > 0
        except Exception:  # a scheduler that does not answer is not ready
            return False

    def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=self._ready())

    def ServerMetadata(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerMetadataResponse(
            name="trackflow", version=version("trackflow"), extensions=[]
        )

    def ModelReady(self, request: Any, context: Any) -> Any:
        ready = request.name == MODEL_NAME and request.version in ("", MODEL_VERSION) and self._ready()
        return service_pb2.ModelReadyResponse(ready=ready)

    def ModelMetadata(self, request: Any, context: Any) -> Any:
        self._check_model(request.name, request.version, context)
        metadata = protocol.model_metadata()
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=MODEL_NAME,
            versions=[MODEL_VERSION],
            platform=metadata["platform"],
            inputs=[
                tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in metadata["inputs"]
            ],
            outputs=[
                tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in metadata["outputs"]
            ],
        )

    def ModelInfer(self, request: Any, context: Any) -> Any:
        self._check_model(request.model_name, request.model_version, context)
        try:
            hits = protocol.hits_from_tensors(_tensors(request), self.config.max_hits)
            for output in request.outputs:
                if output.name != OUTPUT:
                    raise ProtocolError(f"unexpected output {output.name!r}; the output is {OUTPUT!r}")
            event_id = (
                int(request.parameters["event_id"].int64_param) if "event_id" in request.parameters else None
            )
            future = self.service.submit(hits, event_id=event_id)
        except TrackflowError as error:
            status = _STATUS.get(getattr(error, "status", 400), grpc.StatusCode.INVALID_ARGUMENT)
            context.abort(status, " ".join(str(error).split()))
        try:
            tracks = future.result(timeout=self.config.request_timeout_s)
        except (ServiceOverloaded, ServiceClosed) as error:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        except FutureTimeout:
            context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no tracks within serve.request_timeout_s ({self.config.request_timeout_s} s)",
            )
        except Exception as error:  # EventFailed: which stage, and why; or a lost task
            context.abort(grpc.StatusCode.INTERNAL, " ".join(str(error).split()) or type(error).__name__)
        track_id = np.ascontiguousarray(
            protocol.track_ids(hits, tracks), dtype=protocol.DTYPES[OUTPUT_DATATYPE]
        )
        return service_pb2.ModelInferResponse(
            model_name=MODEL_NAME,
            model_version=MODEL_VERSION,
            id=request.id,
            outputs=[
                service_pb2.ModelInferResponse.InferOutputTensor(
                    name=OUTPUT, datatype=OUTPUT_DATATYPE, shape=[len(track_id)]
                )
            ],
            raw_output_contents=[track_id.tobytes()],
        )


class GrpcServer:
    """The gRPC endpoint of ``service`` on ``config.host``:``config.grpc_port`` (0: a free port;
    :attr:`port` says which). :meth:`start` returns at once; :meth:`stop` ends it."""

    def __init__(self, service: Service, config: ServeConfig) -> None:
        self.config = config
        limit = int(config.max_request_bytes)  # type: ignore[arg-type]
        self._server = grpc.server(
            ThreadPoolExecutor(
                max_workers=int(config.grpc_threads),  # type: ignore[arg-type]
                thread_name_prefix="trackflow-serve-grpc",
            ),
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", -1)],
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Servicer(service, config), self._server)
        address = f"{config.host}:{config.grpc_port}"
        ssl_files = (config.tls_cert, config.tls_key)
        try:
            if ssl_files[0] is not None and ssl_files[1] is not None:
                pair = (Path(ssl_files[1]).read_bytes(), Path(ssl_files[0]).read_bytes())
                self.port = self._server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
            else:
                self.port = self._server.add_insecure_port(address)
        except (RuntimeError, OSError) as error:
            raise ConfigError(f"serve: cannot listen for gRPC on {address} ({error})") from error
        if not self.port:
            raise ConfigError(f"serve: cannot listen for gRPC on {address}")

    def start(self) -> GrpcServer:
        self._server.start()
        logger.info("gRPC on %s:%s", self.config.host, self.port)
        return self

    def stop(self) -> None:
        self._server.stop(grace=5).wait(10)
