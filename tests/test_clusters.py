"""Cluster factories and TLS without Slurm: profiles, walltime arithmetic, certificates, a local
cluster with GPU-flagged workers, and a TLS scheduler that refuses clients without a certificate.
The Slurm side is in test_slurm.py."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
from pathlib import Path

import dask.config
import pytest
from distributed import Client, LocalCluster
from distributed.security import Security

from trackflow.cluster import (
    ClusterStartError,
    connect,
    is_gpu_profile,
    lifetime_args,
    load_profiles,
    open_cluster,
    profile_settings,
    walltime_seconds,
)
from trackflow.cluster.tls import (
    TlsFiles,
    check_private,
    remove_certificates,
    tls_security,
    write_certificates,
)
from trackflow.errors import ConfigError


@pytest.mark.parametrize(
    ("walltime", "seconds"),
    [("30", 1800), ("10:30", 630), ("01:00:00", 3600), ("2-00:00:00", 172800), ("1-2", 93600)],
)
def test_walltime_seconds(walltime: str, seconds: int) -> None:
    assert walltime_seconds(walltime) == seconds


@pytest.mark.parametrize("walltime", ["00:05:00", "00:30:00", "12:00:00"])
def test_workers_retire_before_the_walltime(walltime: str) -> None:
    args = lifetime_args(walltime)
    lifetime = int(args[args.index("--lifetime") + 1].rstrip("s"))
    stagger = int(args[args.index("--lifetime-stagger") + 1].rstrip("s"))
    assert lifetime > 0
    assert lifetime + stagger < walltime_seconds(walltime)


def test_shipped_profiles_define_every_jobqueue_key() -> None:
    with dask.config.set(load_profiles()):
        slurm_keys = set(dask.config.get("jobqueue.slurm"))
        for name in ("cpu", "gpu"):
            assert slurm_keys <= set(profile_settings(name)), name
        assert not is_gpu_profile(profile_settings("cpu"))
        assert is_gpu_profile(profile_settings("gpu"))
        assert "--gres=gpu:1" in profile_settings("gpu")["job-extra-directives"]


def test_profile_file_adds_a_profile_for_this_call_only(tmp_path: Path) -> None:
    profile_file = tmp_path / "site.yaml"
    profile_file.write_text(
        "jobqueue:\n  bigmem:\n    cores: 4\n    memory: 100GiB\n"
        "    worker-extra-args: ['--resources', 'GPU=2,MEM=1']\n"
    )
    with dask.config.set(load_profiles(profile_file)):
        settings = profile_settings("bigmem")
        assert settings["memory"] == "100GiB"
        assert settings["walltime"] == dask.config.get("jobqueue.slurm.walltime")  # filled in
        assert is_gpu_profile(settings)
    with pytest.raises(ConfigError, match="bigmem"):
        profile_settings("bigmem")


def test_unknown_profile_names_the_known_ones() -> None:
    with dask.config.set(load_profiles()), pytest.raises(ConfigError) as error:
        profile_settings("no-such-profile")
    assert "no-such-profile" in str(error.value)
    assert "cpu" in str(error.value)
    assert "gpu" in str(error.value)


def test_bad_profile_file_is_reported(tmp_path: Path) -> None:
    profile_file = tmp_path / "broken.yaml"
    profile_file.write_text("cpu: {cores: 1}\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_profiles(profile_file)


def test_slurm_spec_without_slurm_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no sbatch here
    with (
        pytest.raises(ClusterStartError, match="sbatch"),
        open_cluster("slurm-cpu", 1, run_dir=tmp_path),
    ):
        pass


def test_certificates_are_private(tmp_path: Path) -> None:
    files = write_certificates(tmp_path / "tls")
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    for path in (files.ca_file, files.cert_file, files.key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # the leaf certificate is signed by the run's CA, and the CA key was not written
    context = ssl.create_default_context(cafile=str(files.ca_file))
    context.load_cert_chain(str(files.cert_file), str(files.key_file))
    assert sorted(p.name for p in files.directory.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    env = files.environment()
    assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"] == str(files.key_file)

    files.key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="0600"):
        check_private(files)
    remove_certificates(files)
    assert not files.directory.exists()


def test_local_workers_run_with_trackflows_dask_settings() -> None:
    # trackflow.yaml's dask section reaches the worker processes: the statistical profiler off
    # (~10 % of a pipeline's time with every core busy), a failed task tried on one more worker
    def profiler() -> object:
        return dask.config.get("distributed.worker.profile.enabled")

    with open_cluster("local", 1, 1) as handle:
        (enabled,) = handle.client.run(profiler).values()
        allowed = handle.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    assert enabled is False
    assert allowed == 1


def test_local_cluster_routes_gpu_tasks_to_gpu_workers() -> None:
    with open_cluster("local", 2, 1, gpu_workers=1) as handle:
        assert handle.scheduler_address.startswith("tcp://127.0.0.1:")
        kinds = handle.worker_kinds()
        assert sorted(k.kind for k in kinds) == ["cpu", "cpu", "gpu"]
        gpu_address = next(k.address for k in kinds if k.kind == "gpu")
        futures = [handle.client.submit(os.getpid, pure=False, resources={"GPU": 1}) for _ in range(6)]
        handle.client.gather(futures)
        ran_on = {
            address
            for address, keys in handle.client.has_what().items()
            for future in futures
            if future.key in keys
        }
        assert ran_on == {gpu_address}
        cluster, client = handle  # the (cluster, client) form of design.md
        assert client is handle.client
        assert cluster is handle.cluster


def _refused_without_certificate(address: str, ca_file: Path) -> bool:
    """Open a TLS connection that trusts the CA but shows no client certificate; True when the
    scheduler ends it (in TLS 1.3 the refusal arrives with the first read)."""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False
    try:
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"\0" * 8)
            return tls.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def test_tls_scheduler_refuses_clients_without_the_certificate(tmp_path: Path) -> None:
    files = write_certificates(tmp_path / "tls")
    security = tls_security(files)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        security=security,
        host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        with Client(cluster, security=security) as client:
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6

        assert _refused_without_certificate(address, files.ca_file)
        with pytest.raises(OSError):  # plain TCP against the TLS port
            Client(address.replace("tls://", "tcp://"), timeout=5)
        stranger = tls_security(write_certificates(tmp_path / "other"))
        with pytest.raises(OSError):  # a certificate from another run's CA
            Client(address, security=stranger, timeout=5)


def test_connect_through_a_scheduler_file_with_tls_next_to_it(tmp_path: Path) -> None:
    """Batch mode's client side: the TLS files sit in <run dir>/tls beside scheduler.json."""
    files = write_certificates(tmp_path / "tls")
    security = tls_security(files)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        security=security,
        host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        scheduler_file = tmp_path / "scheduler.json"
        scheduler_file.write_text(json.dumps({"address": cluster.scheduler_address}))
        with (
            dask.config.set({"distributed.comm.tls.ca-file": None}),
            open_cluster("ignored", scheduler_file=scheduler_file, start_timeout=30) as handle,
        ):
            assert handle.cluster is None
            assert handle.client.submit(sum, [4, 5]).result(timeout=30) == 9
        assert cluster.scheduler.clients.keys() <= {"fire-and-forget"}  # our client is gone


def test_tls_address_without_certificates_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="certificates"):
        connect.connection_security("tls://127.0.0.1:1", tmp_path, None)
    assert isinstance(connect.connection_security("tcp://127.0.0.1:1", None, None), Security)


def test_tls_files_in_directory_layout(tmp_path: Path) -> None:
    files = TlsFiles.in_directory(tmp_path)
    assert not files.exist()
    assert files.key_file.parent == tmp_path


def test_profile_file_overrides_with_either_key_spelling(tmp_path: Path) -> None:
    profile_file = tmp_path / "site.yaml"
    profile_file.write_text(
        "jobqueue:\n  cpu:\n    worker_extra_args: ['--resources', 'GPU=1']\n    memory: 3GiB\n"
    )
    with dask.config.set(load_profiles(profile_file)):
        settings = profile_settings("cpu")
        assert is_gpu_profile(settings)  # the underscore spelling replaced the shipped value
        assert settings["memory"] == "3GiB"
        assert settings["walltime"] == "00:30:00"  # the rest of the shipped profile stays


def test_unknown_cluster_name_is_reported_before_looking_for_slurm(tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match="cluster slurm-cpus: no such Slurm profile"),
        open_cluster("slurm-cpus", 1, run_dir=tmp_path),
    ):
        pass


# --------------------------------------------------------------------------- start-up faults
WORKER_FAULTS = str(Path(__file__).with_name("worker_faults.py"))


@pytest.fixture
def worker_fault(monkeypatch: pytest.MonkeyPatch) -> object:
    """Set how workers die at start-up (tests/worker_faults.py); the preload is on for the test."""
    from worker_faults import FAULT

    def arm(mode: str) -> None:
        monkeypatch.setenv(FAULT, mode)

    with dask.config.set({"distributed.worker.preload": [WORKER_FAULTS]}):
        yield arm


def test_a_worker_that_dies_at_start_up_is_started_again(worker_fault: object, tmp_path: Path) -> None:
    """Issue 19: a worker killed before the first batch used to abort the run with
    'RuntimeError: Nanny failed to start.'; now it is started again and the run has both."""
    worker_fault(f"once:{tmp_path}")  # type: ignore[operator]
    with open_cluster("local", 2, 1, start_timeout=60) as handle:
        assert (tmp_path / "died").exists()  # one did die
        assert len(handle.client.scheduler_info()["workers"]) == 2
        assert handle.start_problems == []


def test_a_worker_that_never_starts_is_left_out_and_named(worker_fault: object) -> None:
    worker_fault("name:1")  # type: ignore[operator]
    with open_cluster("local", 2, 1, start_timeout=60) as handle:
        assert len(handle.client.scheduler_info()["workers"]) == 1
        assert handle.client.submit(sum, [1, 2]).result() == 3  # the run goes on with one
        (problem,) = handle.start_problems
    assert problem.startswith("cluster local: worker 1 failed to start 2 time(s) (")
    assert problem.endswith("; going on with 1 of 2 workers") and "\n" not in problem


def test_no_worker_at_all_is_one_line_and_exit_2(worker_fault: object, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from trackflow.cli import main

    worker_fault("always")  # type: ignore[operator]
    with pytest.raises(ClusterStartError) as error, open_cluster("local", 2, 1, start_timeout=60):
        pass
    message = str(error.value)
    assert message.startswith("cluster local: no worker started (2 asked for, each tried 2 time(s);")
    assert "\n" not in str(error.value)

    events = tmp_path / "events"
    events.mkdir()
    (events / "event000000001-hits.csv").write_text("hit_id,x,y,z,volume_id,layer_id,module_id\n")
    result = CliRunner().invoke(
        main, ["reconstruct", str(events), "--out", str(tmp_path / "out"), "--workers", "2", "--no-progress"]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"trackflow: error: {error.value}"], result.output
