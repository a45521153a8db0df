"""Workers of a scheduler that is already running: an address (``tcp://``, ``tls://``) or a
scheduler file (batch mode, ``slurm/trackflow.sbatch``). Nothing is started or stopped."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from distributed import Client
from distributed.security import Security

from trackflow.cluster.handle import ClusterHandle, ClusterStartError, wait_for_workers
from trackflow.cluster.tls import TlsFiles, tls_security
from trackflow.errors import ConfigError


def connection_security(address: str, run_dir: Path | None, scheduler_file: Path | None) -> Security | None:
    """Security for a client of a running scheduler: dask's TLS config if set (the sbatch script
    exports it), else the TLS files in ``run_dir/tls`` or next to the scheduler file."""
    from_config = Security()
    if not address.startswith("tls://") or from_config.tls_ca_file:
        return from_config
    candidates = [d / "tls" for d in (run_dir, scheduler_file and scheduler_file.parent) if d]
    for directory in candidates:
        files = TlsFiles.in_directory(directory)
        if files.exist():
            return tls_security(files)
    raise ConfigError(
        f"{address}: a TLS scheduler needs certificates; none in dask config "
        f"(distributed.comm.tls.*) nor in {', '.join(map(str, candidates)) or 'a run directory'}"
    )


@contextlib.contextmanager
def connect_cluster(
    target: str, timeout: float, *, scheduler_file: Path | None = None, run_dir: Path | None = None
) -> Iterator[ClusterHandle]:
    if scheduler_file is not None:
        deadline = time.monotonic() + timeout
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.5)  # batch mode: the scheduler may still be starting
        if not scheduler_file.is_file():
            raise ClusterStartError(f"{scheduler_file}: no scheduler file after {timeout:.0f} s")
        try:
            address = yaml.safe_load(scheduler_file.read_text())["address"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            raise ConfigError(f"{scheduler_file}: not a Dask scheduler file") from None
    else:
        address = target
    security = connection_security(address, run_dir, scheduler_file)
    try:
        client = Client(address, security=security, timeout=timeout)
    except OSError as error:
        raise ClusterStartError(
            f"{target}: cannot connect to the scheduler at {address} ({' '.join(str(error).split())[:200]})"
        ) from None
    try:
        problems = wait_for_workers(client, 1, timeout, f"scheduler {address}")
        yield ClusterHandle(
            client=client,
            cluster=None,
            spec=target,
            security=security,
            run_dir=run_dir,
            start_problems=problems,
        )
    finally:
        client.close()
