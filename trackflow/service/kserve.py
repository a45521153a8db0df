"""``trackflow serve``: a :class:`~trackflow.service.Service` behind the KServe v2 / Triton
inference protocol over HTTP, so that any Triton client (``tritonclient``, ``curl``) sends an
event's hits and gets its track labels back while the Dask cluster behind the service does the
work.

Endpoints (the protocol's; ``{model}`` is ``trackflow``, ``/versions/1`` may follow it):

* ``GET /v2/health/live``, ``GET /v2/health/ready`` (ready: at least one worker connected),
* ``GET /v2`` (server metadata), ``GET /v2/models/{model}`` (model metadata),
  ``GET /v2/models/{model}/ready``, ``GET /v2/models/{model}/config``,
* ``POST /v2/models/{model}/infer`` (JSON or the binary tensor data extension;
  :mod:`trackflow.service.protocol` says what goes in and out).

A bad request (wrong datatype or shape, a missing input, a body over ``serve.max_request_bytes``,
bytes that do not parse) is answered with its status and ``{"error": "<one line>"}``; the server
keeps serving. Every request is answered: with tracks, or with the service's failure (503 when
its queue is full or it is closing, 500 when the event failed, 504 past
``serve.request_timeout_s``).

The HTTP server is tornado's (a dependency of Dask already), on an event loop of its own thread;
an inference request waits on the service's future without holding a thread. Why not Triton's own
front end through PyTriton: its ``nvidia-pytriton`` wheel pins ``numpy<2``, and the bound function
runs in the process that holds the Dask client, so the whole stack, and every Dask worker it
talks to, would have to move to numpy 1.x (and pyarrow <= 21); each request would also cross two
more processes (tritonserver, its Python stub) before reaching the service. The real Triton
serves the exported repository instead (:mod:`trackflow.service.triton`), and the same client
drives both (``benchmarks/vs_triton.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from trackflow.errors import ConfigError, TrackflowError
from trackflow.service import protocol
from trackflow.service.batcher import ServiceClosed, ServiceOverloaded
from trackflow.service.protocol import MODEL_NAME, ProtocolError
from trackflow.service.serve_config import ServeConfig

if TYPE_CHECKING:
    from trackflow.service.service import Service, ServiceConfig

logger = logging.getLogger(__name__)


class _Handler(tornado.web.RequestHandler):
    """Common to every endpoint: errors as ``{"error": ...}``, the model name checked."""

    server: KServeServer

    def initialize(self, server: KServeServer) -> None:
        self.server = server

    def send_json(self, body: bytes | dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body if isinstance(body, bytes) else json.dumps(body).encode())

    def send_error_line(self, message: str, status: int) -> None:
        self.send_json(protocol.error_body(message), status)

    def served_model(self, model: str, version: str | None) -> bool:
        """True for this server's model; otherwise answers the request with the 404 and False."""
        try:
            protocol.check_model(model, version)
        except ProtocolError as error:
            self.send_error_line(str(error), error.status)
            return False
        return True

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # tornado's own errors (an unknown path, a wrong method) as the protocol's
        self.set_header("Content-Type", "application/json")
        self.finish(
            protocol.error_body(f"{status_code} {self._reason}: {self.request.method} {self.request.path}")
        )


class _NotFound(_Handler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)


class _Live(_Handler):
    def get(self) -> None:
        self.send_json({"live": True})


class _Ready(_Handler):
    async def get(self) -> None:
        ready = await self.server.ready()
        self.send_json({"ready": ready}, 200 if ready else 503)


class _ServerMetadata(_Handler):
    def get(self) -> None:
        from importlib.metadata import version

        self.send_json(
            {"name": "trackflow", "version": version("trackflow"), "extensions": ["binary_tensor_data"]}
        )


class _ModelMetadata(_Handler):
    def get(self, model: str, version: str | None = None) -> None:
        if not self.served_model(model, version):
            return
        self.send_json(protocol.model_metadata())


class _ModelReady(_Handler):
    async def get(self, model: str, version: str | None = None) -> None:
        if not self.served_model(model, version):
            return
        ready = await self.server.ready()
        self.send_json({"name": MODEL_NAME, "ready": ready}, 200 if ready else 503)


class _ModelConfig(_Handler):
    def get(self, model: str, version: str | None = None) -> None:
        if not self.served_model(model, version):
            return
        metadata = protocol.model_metadata()
        io = {
            k: [
                {"name": t["name"], "data_type": f"TYPE_{t['datatype']}", "dims": t["shape"]}
                for t in metadata[k]
            ]
            for k in ("inputs", "outputs")
        }
        self.send_json(
            {
                "name": MODEL_NAME,
                "platform": "trackflow",
                "max_batch_size": 0,
                "input": io["inputs"],
                "output": io["outputs"],
            }
        )


@tornado.web.stream_request_body
class _Infer(_Handler):
    """``POST .../infer``: the body is read in chunks, and past ``max_request_bytes`` the rest
    is drained without being kept, so a too-large request is answered (413, naming the limit)
    instead of cut off, and never held in memory."""

    def prepare(self) -> None:
        limit = int(self.server.config.max_request_bytes)  # type: ignore[arg-type]
        self._chunks: list[bytes] = []
        self._received = 0
        # drain up to 4x the limit to answer cleanly; past that tornado drops the connection
        self.request.connection.set_max_body_size(4 * limit)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received <= int(self.server.config.max_request_bytes):  # type: ignore[arg-type]
            self._chunks.append(chunk)
        else:
            self._chunks.clear()

    async def post(self, model: str, version: str | None = None) -> None:
        status, body, header_length = await self.server.infer(
            model,
            version,
            self._received,
            b"".join(self._chunks),
            self.request.headers.get("Inference-Header-Content-Length"),
        )
        self.set_status(status)
        if header_length is not None:
            self.set_header("Inference-Header-Content-Length", str(header_length))
            self.set_header("Content-Type", "application/octet-stream")
        else:
            self.set_header("Content-Type", "application/json")
        self.finish(body)


class KServeServer:
    """The HTTP front end of ``service`` (module docstring): :meth:`start` listens (on its own
    thread) and returns; :meth:`stop` closes the listener (the service stays open: its owner
    closes it). A context manager: ``with KServeServer(service) as server: server.url``."""

    def __init__(self, service: Service, config: ServeConfig | None = None) -> None:
        self.service = service
        self.config = config or ServeConfig()
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._grpc: Any = None
        self.counts = {"requests": 0, "answered": 0, "errors": 0}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        # a front end on the client's loop must never wait there: a blocking queue would hold
        # the very loop that frees its room (ServiceConfig.front_end_loop)
        self.on_client_loop = (
            service.config.front_end_loop == "client" and str(service.config.queue_policy) != "block"
        )

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{self.config.host}:{self.http_port}"

    def start(self) -> KServeServer:
        """Bind and serve; raises ConfigError when the address cannot be bound."""
        ssl_context = self.config.ssl_context()
        try:
            sockets = tornado.netutil.bind_sockets(int(self.config.http_port), str(self.config.host))  # type: ignore[arg-type]
        except OSError as error:
            raise ConfigError(
                f"serve: cannot listen on {self.config.host}:{self.config.http_port} "
                f"({error.strerror or error})"
            ) from error
        self.http_port = int(sockets[0].getsockname()[1])
        started: Future = Future()
        if self.on_client_loop:
            # the Dask client's event loop: a request, its actor call and its answer all run on
            # one thread, with no hop between the front end and the client (service.front_end_loop)
            client_loop: asyncio.AbstractEventLoop = self.service.client.loop.asyncio_loop  # type: ignore[union-attr]
            asyncio.run_coroutine_threadsafe(self._listen(sockets, ssl_context, started), client_loop)
        else:
            self._thread = threading.Thread(
                target=self._run,
                args=(sockets, ssl_context, started),
                name="trackflow-serve-http",
                daemon=True,
            )
            self._thread.start()
        started.result(timeout=30)
        if self.config.grpc:
            from trackflow.service.kserve_grpc import GrpcServer

            try:
                self._grpc = GrpcServer(self.service, self.config).start()
            except BaseException:
                self.stop()
                raise
            self.grpc_port = self._grpc.port
        logger.info("serving model %r on %s (gRPC port %s)", MODEL_NAME, self.url, self.grpc_port)
        return self

    def _application(self) -> tornado.web.Application:
        model = r"/v2/models/([^/]+)(?:/versions/([^/]+))?"
        args = {"server": self}
        return tornado.web.Application(
            default_handler_class=_NotFound,
            default_handler_args=args,
            handlers=[
                (r"/v2/health/live", _Live, args),
                (r"/v2/health/ready", _Ready, args),
                (r"/v2/?", _ServerMetadata, args),
                (model + r"/?", _ModelMetadata, args),
                (model + r"/ready", _ModelReady, args),
                (model + r"/config", _ModelConfig, args),
                (model + r"/infer", _Infer, args),
            ],
        )

    async def _listen(self, sockets: list[Any], ssl_context: ssl.SSLContext | None, started: Future) -> None:
        """Listen on ``sockets`` from the running loop (the Dask client's, or this server's own)."""
        self._loop = asyncio.get_running_loop()
        try:
            # the body limit applies per request in _Infer.prepare; this one only bounds the rest
            self._http = tornado.httpserver.HTTPServer(
                self._application(),
                ssl_options=ssl_context,
                max_body_size=1 << 20,
                idle_connection_timeout=3600,
            )
            self._http.add_sockets(sockets)
        except BaseException as error:
            started.set_exception(error)
            raise
        started.set_result(True)

    def _run(self, sockets: list[Any], ssl_context: ssl.SSLContext | None, started: Future) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        with contextlib.suppress(BaseException):
            loop.run_until_complete(self._listen(sockets, ssl_context, started))
        if not started.done() or started.exception() is not None:
            loop.close()
            return
        loop.run_forever()
        # stopped: let the closing connections finish, then close the loop
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self) -> None:
        """Stop listening and close the open connections (requests in flight are dropped by
        the connections' close; stop the traffic first)."""
        if self._grpc is not None:
            self._grpc.stop()
            self._grpc = None
        loop, http = self._loop, self._http
        if loop is None or http is None:
            return

        async def shut() -> None:
            http.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(http.close_all_connections(), 5)
            if self._thread is not None:  # the server's own loop; the client's stays
                loop.stop()

        done = asyncio.run_coroutine_threadsafe(shut(), loop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        else:
            with contextlib.suppress(Exception):
                done.result(timeout=10)
        self._loop = self._http = None

    def __enter__(self) -> KServeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the endpoints' work
    async def ready(self) -> bool:
        """At least one worker connected (asked of the scheduler off the event loop)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self.service.connected_workers) > 0
        except Exception:  # a scheduler that does not answer is not ready
            logger.warning("readiness: the scheduler did not answer", exc_info=True)
            return False

    async def infer(
        self, model: str, version: str | None, received: int, body: bytes, header_length: str | None
    ) -> tuple[int, bytes, int | None]:
        """(status, body, binary header length or None) of one inference request."""
        with self._lock:
            self.counts["requests"] += 1
        try:
            status, answer, length = await self._infer(model, version, received, body, header_length)
        except ProtocolError as error:
            status, answer, length = error.status, protocol.error_body(str(error)), None
        with self._lock:
            self.counts["answered" if status == 200 else "errors"] += 1
        return status, answer, length

    async def _infer(
        self, model: str, version: str | None, received: int, body: bytes, header_length: str | None
    ) -> tuple[int, bytes, int | None]:
        protocol.check_model(model, version)
        limit = int(self.config.max_request_bytes)  # type: ignore[arg-type]
        if received > limit:
            raise ProtocolError(
                f"request body of {received} bytes exceeds serve.max_request_bytes ({limit})", 413
            )
        try:
            length = None if header_length is None else int(header_length)
        except ValueError as error:
            raise ProtocolError(
                f"Inference-Header-Content-Length {header_length!r} is not a number"
            ) from error
        request = protocol.parse_infer_request(body, length, self.config.max_hits)
        hit_ids = request.hits if request.hit_ids is None else request.hit_ids
        try:
            future = self.service.submit(request.hits, event_id=request.event_id)
        except TrackflowError as error:  # refused at once (hits the service cannot take)
            raise ProtocolError(str(error)) from error
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                tracks = await _on_this_loop(future)
        except (ServiceOverloaded, ServiceClosed) as error:
            return 503, protocol.error_body(str(error)), None
        except TimeoutError:
            # the service still answers the future later; the client has been told
            message = f"no tracks within serve.request_timeout_s ({self.config.request_timeout_s} s)"
            return 504, protocol.error_body(message), None
        except Exception as error:  # EventFailed: which stage, and why; or a lost task
            return 500, protocol.error_body(" ".join(str(error).split()) or type(error).__name__), None
        answer, header = protocol.encode_infer_response(
            protocol.track_ids(hit_ids, tracks), request.request_id, request.binary_output
        )
        return 200, answer, header


def _on_this_loop(future: Future) -> asyncio.Future:
    """``future`` (a concurrent one) as an asyncio future of the running loop. Answered on this
    loop's own thread (actor dispatch with the front end on the client's loop), the outcome is
    handed over at once; from another thread through call_soon_threadsafe, as
    asyncio.wrap_future does always (a wake-up of the loop through its self-pipe per request)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def settle(done: Future) -> None:
        if waiter.done():  # timed out or cancelled meanwhile
            return
        if done.cancelled():
            waiter.cancel()
        elif done.exception() is not None:
            waiter.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            waiter.set_result(done.result())

    def answered(done: Future) -> None:
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            settle(done)
        elif not loop.is_closed():  # a closed loop: the server has stopped, nobody waits
            loop.call_soon_threadsafe(settle, done)

    future.add_done_callback(answered)
    return waiter


def run_server(
    cluster: str | Sequence[str],
    workers: int | None,
    service_config: ServiceConfig,
    serve_config: ServeConfig,
    stop: threading.Event,
    on_ready: Callable[[KServeServer], None] | None = None,
    **cluster_options: Any,
) -> dict[str, Any]:
    """Open the cluster and the service on it, serve until ``stop`` is set, then close both.

    ``cluster``: one spec or several, as :meth:`Service.open <trackflow.service.Service.open>`
    takes them (``service.more_clusters`` adds more), each opened with ``workers`` and
    ``cluster_options``. ``on_ready(server)`` is called once it listens (the CLI prints the
    address). Returns the counts of the run: the front end's requests / answered / errors and
    the service's :class:`~trackflow.service.ServiceCounts`.
    """
    from trackflow.service.service import Service

    with Service.open(cluster, workers or 1, service_config, **cluster_options) as service:
        with KServeServer(service, serve_config) as server:
            if on_ready is not None:
                on_ready(server)
            stop.wait()
        return {"http": dict(server.counts), "service": service.counts().to_dict()}
