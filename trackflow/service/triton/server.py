"""Start the real ``tritonserver`` that the ``nvidia-pytriton`` wheel bundles, on a repository.

The server and its Python backend come from another environment than trackflow's own (the
wheel pins ``numpy<2``; ``make venv-triton`` builds ``.venv/triton`` with it and trackflow), so
this module only runs that environment's Python once to find the pieces
(:func:`triton_environment`) and then the binary itself. What it sets up, learnt on this kind of
machine (REFERENCE §10):

* a backend directory holding the Python backend beside the stub built for the environment's
  Python version (the wheel ships one stub per version, apart from the backend);
* ``LD_LIBRARY_PATH`` with the environment's own ``libpython`` directory first: the stub links
  ``libpython3.X.so``, and the system's copy of another patch release fails at model load
  (``'_thread.RLock' object has no attribute '_recursion_count'``); then the wheel's libraries;
* ``PATH`` and ``PYTHONPATH`` of that environment, so the stub imports its numpy and trackflow;
* every port on ``host`` (loopback by default), chosen free when not given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trackflow import config
from trackflow.errors import ConfigError, TrackflowError

logger = logging.getLogger(__name__)


class TritonStartError(TrackflowError, RuntimeError):
    """The tritonserver did not become ready (the message ends with its log's last lines)."""


@dataclass(frozen=True)
class TritonEnvironment:
    """Where the pieces of the bundled Triton lie in one Python environment."""

    python: Path
    tritonserver: Path
    python_backend: Path  # holds libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for the environment's Python version
    libs: Path  # the wheel's shared libraries
    libdir: Path  # the environment's libpython directory
    bin_dir: Path
    site_packages: Path
    #: directories the Python stub imports from before the environment's own (a benchmark
    #: makes Triton run the same trackflow tree as the rest of its run)
    first_paths: tuple[Path, ...] = ()


_PROBE = r"""
import json, pathlib, sys, sysconfig
import pytriton
root = pathlib.Path(pytriton.__file__).parent
version = f"{sys.version_info[0]}.{sys.version_info[1]}"
print(json.dumps({
    "tritonserver": str(root / "tritonserver" / "bin" / "tritonserver"),
    "python_backend": str(root / "tritonserver" / "backends" / "python"),
    "stub": str(root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"),
    "libs": str(root.parent / "nvidia_pytriton.libs"),
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "bin_dir": str(pathlib.Path(sys.executable).parent),
    "site_packages": sysconfig.get_paths()["purelib"],
}))
"""


def triton_environment(python: Path | None = None) -> TritonEnvironment:
    """The bundled Triton of the environment whose interpreter is ``python`` (None:
    ``serve.triton.python``); ConfigError naming what is missing."""
    given = python if python is not None else config.get("serve.triton.python", None)
    if given is None:
        raise ConfigError(
            "serve.triton.python: not set; give the Python of an environment with "
            "trackflow[triton] (make venv-triton builds .venv/triton)"
        )
    python = Path(given)
    if not python.exists():
        raise ConfigError(f"serve.triton.python {python}: not found (make venv-triton builds .venv/triton)")
    try:
        probe = subprocess.run(
            [str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"serve.triton.python {python}: cannot run it ({error})") from error
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"serve.triton.python {python}: no nvidia-pytriton there ({last})")
    found: dict[str, Any] = {k: Path(v) for k, v in json.loads(probe.stdout).items()}
    environment = TritonEnvironment(python=python, **found)
    for name in ("tritonserver", "stub", "python_backend"):
        if not getattr(environment, name).exists():
            raise ConfigError(f"serve.triton.python {python}: the wheel has no {getattr(environment, name)}")
    return environment


def free_port(host: str) -> int:
    """A port free on ``host`` now (another process may take it before Triton binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class TritonServer:
    """``tritonserver`` on ``repository``, as a context manager (module docstring).

    ``http_port`` / ``grpc_port`` / ``metrics_port``: None = a free port; ``host``: None =
    ``serve.host`` (loopback). ``start_timeout_s``: s to wait for every model to load (None:
    ``serve.triton.start_timeout_s``). The server's log is kept in ``log_path``.
    """

    def __init__(
        self,
        repository: Path,
        environment: TritonEnvironment | None = None,
        host: str | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        start_timeout_s: float | None = None,
    ) -> None:
        self.repository = Path(repository)
        if not (self.repository.is_dir() and any(self.repository.glob("*/config.pbtxt"))):
            raise ConfigError(f"{self.repository}: not a Triton model repository (no */config.pbtxt)")
        self.environment = environment or triton_environment()
        self.host = str(host or config.get("serve.host"))
        self.http_port = http_port or free_port(self.host)
        self.grpc_port = grpc_port or free_port(self.host)
        self.metrics_port = metrics_port or free_port(self.host)
        self.start_timeout_s = float(start_timeout_s or config.get("serve.triton.start_timeout_s"))
        self._work: Path | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``host:port`` of the HTTP endpoint (as tritonclient takes it)."""
        return f"{self.host}:{self.http_port}"

    def _backends(self, work: Path) -> Path:
        backends = work / "backends"
        python = backends / "python"
        python.mkdir(parents=True)
        for item in self.environment.python_backend.iterdir():
            (python / item.name).symlink_to(item)
        shutil.copy2(self.environment.stub, python / "triton_python_backend_stub")
        return backends

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        libraries = [str(self.environment.libdir), str(self.environment.libs)]
        if env.get("LD_LIBRARY_PATH"):
            libraries.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(libraries)
        env["PATH"] = f"{self.environment.bin_dir}:{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(
            str(path) for path in (*self.environment.first_paths, self.environment.site_packages)
        )
        env.pop("PYTHONHOME", None)
        return env

    def start(self) -> TritonServer:
        """Start the server and wait until it is ready; TritonStartError (with its log) if not."""
        self._work = Path(tempfile.mkdtemp(prefix="trackflow-triton-"))
        self.log_path = self._work / "tritonserver.log"
        command = [
            str(self.environment.tritonserver),
            f"--model-repository={self.repository.resolve()}",
            f"--backend-directory={self._backends(self._work)}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--log-verbose=0",
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self._env(), start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                if self.ready():
                    logger.info("tritonserver ready on %s (repository %s)", self.url, self.repository)
                    return self
                time.sleep(0.5)
        except BaseException:  # interrupted while the models load: no server left behind
            self.stop()
            raise
        problem = (
            f"exited with code {self._process.returncode}"
            if self._process.poll() is not None
            else f"not ready after {self.start_timeout_s:g} s"
        )
        self.stop()
        # a model that did not load says why on its own line; else the log's last lines
        reasons = [line for line in self.log_tail(200) if "failed to load" in line][:3]
        shown = " | ".join(reasons or self.log_tail(8))
        raise TritonStartError(
            f"tritonserver on {self.repository}: {problem}; {shown} (log: {self.log_path})"
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=5) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 20) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return [" ".join(line.split()) for line in text[-lines:]]

    def stop(self) -> None:
        """SIGTERM (Triton unloads its models and exits), then SIGKILL after 30 s."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._work is not None and self.log_path is not None:
            kept = Path(tempfile.gettempdir()) / f"{self._work.name}.log"
            with contextlib.suppress(OSError):
                shutil.copy2(self.log_path, kept)
                self.log_path = kept
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m trackflow.service.triton.server REPOSITORY [--python PY] [--http-port N]``:
    the bundled tritonserver on a repository until Ctrl-C (its ports and log are printed)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m trackflow.service.triton.server", description=main.__doc__
    )
    parser.add_argument("repository", type=Path)
    parser.add_argument("--python", type=Path, default=None, help="serve.triton.python")
    parser.add_argument("--http-port", type=int, default=None, help="default: a free port")
    parser.add_argument("--grpc-port", type=int, default=None, help="default: a free port")
    args = parser.parse_args(argv)
    try:
        server = TritonServer(
            args.repository,
            triton_environment(args.python),
            http_port=args.http_port,
            grpc_port=args.grpc_port,
        )
        with server:
            print(
                f"tritonserver ready: http {server.url}, grpc {server.host}:{server.grpc_port}; "
                f"log {server.log_path}; Ctrl-C stops",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except TrackflowError as error:
        raise SystemExit(f"trackflow: error: {error}") from None


if __name__ == "__main__":
    main()
