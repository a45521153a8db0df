"""``trackflow serve``'s settings (:class:`ServeConfig`), shared by its HTTP and gRPC endpoints."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from trackflow import config
from trackflow.errors import ConfigError


@dataclass
class ServeConfig:
    """Where and how ``trackflow serve`` listens (None = the default under ``serve.`` in
    ``trackflow.yaml``).

    ``host``: address to bind (default loopback: only this machine can connect); ``http_port``
    (0: any free port; :attr:`KServeServer.http_port` says which); ``grpc``: also serve gRPC,
    on ``grpc_port`` (0: any free port; :attr:`KServeServer.grpc_port`) with ``grpc_threads``
    threads (one per request in flight); ``max_request_bytes``: bytes
    one request body may hold; ``max_hits``: hits one event may have; ``request_timeout_s``: s
    a request waits for its tracks before it is answered with an error (504);
    ``tls_cert`` / ``tls_key``: PEM files, to serve HTTPS (both or neither).
    """

    host: str | None = None
    http_port: int | None = None
    grpc: bool | None = None
    grpc_port: int | None = None
    grpc_threads: int | None = None
    max_request_bytes: int | None = None
    max_hits: int | None = None
    request_timeout_s: float | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        for key in (
            "host",
            "http_port",
            "grpc",
            "grpc_port",
            "grpc_threads",
            "max_request_bytes",
            "max_hits",
            "request_timeout_s",
            "tls_cert",
            "tls_key",
        ):
            if getattr(self, key) is None:
                setattr(self, key, config.get(f"serve.{key}", None))
        if self.max_request_bytes is None or int(self.max_request_bytes) < 1:
            raise ConfigError(f"serve.max_request_bytes {self.max_request_bytes}: must be >= 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("serve.tls_cert and serve.tls_key: give both (PEM files) or neither")

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"serve.tls_cert {self.tls_cert} / tls_key {self.tls_key}: {error}") from error
        return context
