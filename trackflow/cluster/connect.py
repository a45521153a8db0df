"""Workers of a scheduler that is already running: an address (``tcp://``, ``tls://``) or a
scheduler file (batch mode, ``slurm/trackflow.sbatch``). Nothing is started or stopped.

A connection that fails says which of two things happened, in one line each: the scheduler was
*unreachable* (nothing answered at the address within the timeout: a wrong address, a scheduler
not running, a firewall) or the TLS handshake was *refused* (a certificate of another run's CA,
an expired one, on either side). The first is :class:`SchedulerUnreachableError`, the second
:class:`TlsRefusedError`; both are :class:`ClusterStartError` (the CLI's exit 2).
"""

from __future__ import annotations

import contextlib
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from distributed import Client
from distributed.security import Security

from trackflow.cluster.handle import ClusterHandle, ClusterStartError, wait_for_workers
from trackflow.cluster.tls import TlsFiles, certificate_problem, tls_security
from trackflow.errors import ConfigError


class SchedulerUnreachableError(ClusterStartError):
    """Nothing answered at the scheduler's address within the timeout."""


class TlsRefusedError(ClusterStartError):
    """The scheduler answered, but the TLS handshake failed: a wrong CA or an expired certificate."""


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _one_line(error: BaseException) -> str:
    # distributed prefixes "in <TLS (closed) local=... remote=...>: "; the cause is what follows
    text = re.sub(r"^in <[^>]*>: ", "", " ".join(str(error).split()))[:200]
    # a timeout says nothing (str(TimeoutError()) is ""): name it, so the line still tells why
    return text or f"{type(error).__name__}: no answer in time"


def connect_error(
    target: str, address: str, error: BaseException, security: Security | None
) -> ClusterStartError:
    """One line for a failed connection to ``address``: refused (TLS) or unreachable."""
    chain = _chain(error)
    verify = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    tls_failure = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    if address.startswith("tls://") and (verify is not None or tls_failure is not None):
        ours = None
        # Security sets its tls_* attributes from dask.config at run time (no declared fields)
        cert = getattr(security, "tls_client_cert", None)
        ca_file = getattr(security, "tls_ca_file", None)
        if cert and ca_file:
            problem = certificate_problem(cert, ca_file)
            ours = problem and f"our certificate {cert}: {problem}"
        if verify is not None:  # we checked the scheduler's certificate and it failed
            theirs = str(verify.verify_message or verify.reason)
            if "self-signed" in theirs or "issuer" in theirs:
                theirs += ": it is signed by another CA than ours (another run's certificates?)"
            why = f"the scheduler's certificate failed our check ({theirs})"
        else:  # the scheduler ended the handshake: it did not accept our certificate
            ended = _one_line(tls_failure) if tls_failure is not None else "closed"
            why = f"the scheduler ended the handshake ({ended}): it did not accept our certificate"
        return TlsRefusedError(
            f"{target}: TLS refused by the scheduler at {address}: {why}"
            + (f"; {ours}" if ours else "")
            + "; use the certificates of the scheduler's run (distributed.comm.tls.*, or RUN_DIR/tls)"
        )
    cause = _one_line(chain[-1]) if len(chain) > 1 else _one_line(error)
    return SchedulerUnreachableError(
        f"{target}: scheduler unreachable at {address} ({cause}); is it running, and is the address right?"
    )


def connection_security(address: str, run_dir: Path | None, scheduler_file: Path | None) -> Security | None:
    """Security for a client of a running scheduler: dask's TLS config if set (the sbatch script
    exports it), else the TLS files in ``run_dir/tls`` or next to the scheduler file."""
    from_config = Security()
    if not address.startswith("tls://") or getattr(from_config, "tls_ca_file", None):
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
    except OSError as error:  # distributed's CommClosedError and TimeoutError are OSErrors
        raise connect_error(target, address, error, security) from None
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
