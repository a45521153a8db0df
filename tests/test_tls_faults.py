"""TLS gone wrong (issue 19): a certificate of another run's CA, an expired certificate on either
side, and a scheduler that is not there. "Refused" (the handshake failed) and "unreachable"
(nothing answered) are told apart, one line each, through open_cluster and the CLI (exit 2).

Certificates are made with the ``openssl`` command, as trackflow makes its own; a real Dask
scheduler (in this process, or ``dask scheduler`` in a subprocess) holds the other end."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dask.config
import pytest
from click.testing import CliRunner
from distributed import LocalCluster

from trackflow.cli import main
from trackflow.cluster import open_cluster
from trackflow.cluster.connect import SchedulerUnreachableError, TlsRefusedError
from trackflow.cluster.tls import TlsFiles, certificate_problem, tls_security, write_certificates

CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(directory: Path, *args: str) -> None:
    quiet = {"capture_output": True, "stdin": subprocess.DEVNULL}
    subprocess.run(["openssl", *args], cwd=directory, check=True, umask=0o077, **quiet)


@pytest.fixture(scope="module")
def one_ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsFiles]:
    """One CA and two certificates it signs: ``good`` (valid 2 days) and ``expired`` (its
    notAfter a day before its notBefore, i.e. yesterday), each a TlsFiles directory."""
    root = tmp_path_factory.mktemp("one_ca")
    ca = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA"]
    _openssl(root, "req", "-x509", *CURVE, *ca, "-addext", "basicConstraints=critical,CA:TRUE")
    (root / "leaf.ext").write_text(
        "basicConstraints = critical, CA:FALSE\nextendedKeyUsage = serverAuth, clientAuth\n"
    )
    made = {}
    for name, days in (("good", "2"), ("expired", "-1")):
        directory = root / name
        directory.mkdir(mode=0o700)
        request = ["-keyout", f"{name}/key.pem", "-out", f"{name}/leaf.csr", "-subj", "/CN=trackflow-dask"]
        _openssl(root, "req", "-new", *CURVE, *request)
        signing = ["-in", f"{name}/leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-extfile", "leaf.ext"]
        _openssl(root, "x509", "-req", *signing, "-days", days, "-out", f"{name}/cert.pem")
        (directory / "ca.pem").write_bytes((root / "ca.pem").read_bytes())
        made[name] = TlsFiles.in_directory(directory)
    return made


@contextlib.contextmanager
def tls_scheduler(files: TlsFiles) -> Iterator[str]:
    """A TLS scheduler (in this process) presenting ``files``; yields its address."""
    with LocalCluster(
        n_workers=0,
        processes=False,
        protocol="tls://",
        security=tls_security(files),
        host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        yield cluster.scheduler_address


def _tls_config(files: TlsFiles) -> dict[str, str]:
    """dask config (as the sbatch script exports it) making a client present ``files``."""
    return {
        "distributed.comm.tls.ca-file": str(files.ca_file),
        "distributed.comm.tls.client.cert": str(files.cert_file),
        "distributed.comm.tls.client.key": str(files.key_file),
    }


def test_the_expired_fixture_is_expired_and_the_good_one_verifies(one_ca: dict[str, TlsFiles]) -> None:
    assert certificate_problem(one_ca["good"].cert_file, one_ca["good"].ca_file) is None
    problem = certificate_problem(one_ca["expired"].cert_file, one_ca["expired"].ca_file)
    assert problem is not None and problem.startswith("certificate has expired (notAfter=")


def test_a_certificate_of_another_ca_is_refused(one_ca: dict[str, TlsFiles], tmp_path: Path) -> None:
    stranger = write_certificates(tmp_path / "run" / "tls")  # another run's CA and certificate
    with (
        tls_scheduler(one_ca["good"]) as address,
        pytest.raises(TlsRefusedError) as error,
        open_cluster(address, run_dir=tmp_path / "run"),
    ):
        pass
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{address}: TLS refused by the scheduler at {address}: ")
    assert "the scheduler's certificate failed our check" in message
    assert "signed by another CA than ours" in message
    assert str(stranger.cert_file) not in message  # ours verifies against our CA: not blamed


def test_our_expired_certificate_is_refused_and_named(one_ca: dict[str, TlsFiles]) -> None:
    expired = one_ca["expired"]
    with (
        tls_scheduler(one_ca["good"]) as address,
        dask.config.set(_tls_config(expired)),
        pytest.raises(TlsRefusedError) as error,
        open_cluster(address, start_timeout=20),
    ):
        pass
    message = str(error.value)
    assert "\n" not in message
    assert "the scheduler ended the handshake" in message and "did not accept our certificate" in message
    assert f"our certificate {expired.cert_file}: certificate has expired (notAfter=" in message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_schedulers_expired_certificate_is_refused(one_ca: dict[str, TlsFiles], tmp_path: Path) -> None:
    """The scheduler presents an expired certificate (a ``dask scheduler`` process: an
    in-process cluster could not connect to itself with it)."""
    expired = one_ca["expired"]
    port = _free_port()
    tls = ["--tls-ca-file", str(expired.ca_file), "--tls-cert", str(expired.cert_file)]
    tls += ["--tls-key", str(expired.key_file)]
    listen = ["--host", "127.0.0.1", "--port", str(port), "--protocol", "tls", "--no-dashboard"]
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", *listen, *tls],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # listening?
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        address = f"tls://127.0.0.1:{port}"
        with (
            dask.config.set(_tls_config(one_ca["good"])),
            pytest.raises(TlsRefusedError) as error,
            open_cluster(address, start_timeout=20),
        ):
            pass
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)
    message = str(error.value)
    assert "the scheduler's certificate failed our check (certificate has expired)" in message, message
    assert "our certificate" not in message  # ours is fine


def test_nothing_listening_is_unreachable_not_refused(one_ca: dict[str, TlsFiles]) -> None:
    address = f"tls://127.0.0.1:{_free_port()}"
    with (
        dask.config.set(_tls_config(one_ca["good"])),
        pytest.raises(SchedulerUnreachableError) as error,
        open_cluster(address, start_timeout=3),
    ):
        pass
    message = str(error.value)
    assert "\n" not in message and "TLS" not in message
    assert message.startswith(f"{address}: scheduler unreachable at {address} (")
    # a closed port refuses at once; on a loaded machine the attempt may time out first
    assert "Connection refused" in message or "no answer in time" in message


@pytest.mark.parametrize("case", ["refused", "unreachable"])
def test_the_cli_says_refused_or_unreachable_in_one_line_exit_2(
    case: str, one_ca: dict[str, TlsFiles], tmp_path: Path
) -> None:
    events = tmp_path / "events"
    events.mkdir()
    (events / "event000000001-hits.csv").write_text("hit_id,x,y,z,volume_id,layer_id,module_id\n")
    own = one_ca["expired"] if case == "refused" else one_ca["good"]
    with contextlib.ExitStack() as stack:
        address = (
            stack.enter_context(tls_scheduler(one_ca["good"]))
            if case == "refused"
            else f"tls://127.0.0.1:{_free_port()}"
        )
        stack.enter_context(dask.config.set(_tls_config(own)))
        stack.enter_context(dask.config.set({"trackflow.workflow.cluster.start_timeout": 3}))
        result = CliRunner().invoke(
            main, ["reconstruct", str(events), "--out", str(tmp_path / "out"), "--cluster", address]
        )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    expected = "TLS refused by the scheduler" if case == "refused" else "scheduler unreachable"
    assert lines[0].startswith(f"trackflow: error: {address}: {expected} at {address}"), lines[0]
