"""One typed ClusterOptions for reconstruct, bench, stream, serve and the CLI (issue 31): the CLI's
cluster flags become one value, the configs hold it, and it opens the cluster it describes."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

from trackflow.bench.bench_config import BenchConfig
from trackflow.bench.sweep import _config_record
from trackflow.cli import cluster_from, main
from trackflow.cluster import ClusterOptions, open_cluster
from trackflow.errors import ConfigError
from trackflow.run.reconstruct import ReconstructConfig
from trackflow.service.stream import StreamConfig


def parsed(command: str, *args: str) -> dict[str, object]:
    """The keyword arguments click hands ``command`` for these arguments (nothing runs)."""
    return dict(main.commands[command].make_context(command, list(args)).params)


def test_worker_count_and_slots_follow_the_spec() -> None:
    local = ClusterOptions()
    assert local.spec == "local" and local.is_local
    assert local.worker_count() == (os.cpu_count() or 1)
    assert ClusterOptions(spec="slurm-cpu").worker_count() == 1  # one job unless told
    assert ClusterOptions(workers=3, threads_per_worker=2).slots() == 6
    assert ClusterOptions(workers=3, gpu_workers=1).slots() == 4
    # adaptive: the most jobs it may have
    assert ClusterOptions(spec="slurm-cpu", workers=1, adapt=(2, 5)).slots() == 5
    assert not ClusterOptions(scheduler_file=Path("s.json")).is_local


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers 0"),
        ({"threads_per_worker": 0}, "threads_per_worker 0"),
        ({"gpu_workers": -1}, "gpu_workers -1"),
        ({"adapt": (3, 2)}, "adapt 3:2"),
    ],
)
def test_bad_values_are_refused_naming_the_field(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClusterOptions(**options)  # type: ignore[arg-type]


def test_paths_given_as_strings_become_paths_and_the_value_is_frozen() -> None:
    options = ClusterOptions(scheduler_file="run/scheduler.json", profile_file="site.yaml")  # type: ignore[arg-type]
    assert options.scheduler_file == Path("run/scheduler.json")
    assert options.profile_file == Path("site.yaml")
    with pytest.raises(AttributeError):
        options.workers = 4  # type: ignore[misc]


def test_open_kwargs_are_open_clusters_own_keyword_arguments() -> None:
    """Everything ClusterOptions hands open_cluster is one of its parameters, so a renamed
    parameter fails here rather than in a user's run."""
    parameters = inspect.signature(open_cluster).parameters
    kwargs = ClusterOptions().open_kwargs()
    assert set(kwargs) <= set(parameters)
    assert {"spec", "workers"} <= set(parameters) - set(kwargs)


def test_opens_the_local_cluster_it_describes() -> None:
    options = ClusterOptions(workers=2, threads_per_worker=1)
    with options.open() as handle:
        assert sum(handle.client.nthreads().values()) == options.slots() == 2


def test_the_cli_builds_one_cluster_options_from_its_flags(tmp_path: Path) -> None:
    profile = tmp_path / "site.yaml"
    profile.write_text("jobqueue: {}\n")
    events = tmp_path / "events"
    events.mkdir()
    params = parsed(
        "reconstruct",
        str(events),
        "--out",
        str(tmp_path / "out"),
        "--cluster",
        "slurm-cpu",
        "--adapt",
        "2:8",
        "--profile",
        str(profile),
        "--insecure",
        "--workers",
        "3",
        "--threads-per-worker",
        "2",
        "--gpu-workers",
        "1",
        "--scheduler-file",
        str(tmp_path / "scheduler.json"),
    )
    cluster = cluster_from(params)
    assert cluster == ClusterOptions(
        spec="slurm-cpu",
        workers=3,
        threads_per_worker=2,
        gpu_workers=1,
        adapt=(2, 8),
        scheduler_file=tmp_path / "scheduler.json",
        profile_file=profile,
        insecure=True,
    )
    # taken out of the options: the rest go to ReconstructConfig as they are
    assert not {"cluster", "workers", "threads_per_worker", "adapt", "insecure"} & set(params)
    assert params["out_dir"] == tmp_path / "out"

    # no flags: the dataclass's defaults; stream and serve default to 2 workers as before
    assert cluster_from(parsed("reconstruct", str(events), "--out", str(tmp_path / "o"))) == ClusterOptions()
    assert cluster_from(parsed("stream", str(events), "--rate", "1")) == ClusterOptions(workers=2)
    assert cluster_from(parsed("serve")) == ClusterOptions(workers=2)
    # bench sweeps its --workers: they stay the bench's
    bench = parsed(
        "bench", str(events), "--out", str(tmp_path / "b"), "--workers", "1,2", "--cluster", "tcp://h:1"
    )
    assert cluster_from(bench, worker_counts=False) == ClusterOptions(spec="tcp://h:1")
    assert bench["workers"] == [1, 2]


def test_the_configs_hold_cluster_options_and_refuse_a_bare_spec(tmp_path: Path) -> None:
    cluster = ClusterOptions(spec="slurm-cpu", workers=4)
    assert ReconstructConfig(tmp_path / "in", tmp_path / "out", cluster=cluster).cluster is cluster
    assert ReconstructConfig(tmp_path / "in", tmp_path / "out").cluster == ClusterOptions()
    assert StreamConfig(tmp_path, tmp_path / "s", rates=[1.0]).cluster == ClusterOptions(workers=2)
    for make in (
        lambda: ReconstructConfig(tmp_path / "in", tmp_path / "out", cluster="slurm-cpu"),  # type: ignore[arg-type]
        lambda: BenchConfig(tmp_path, tmp_path / "b", cluster="local"),  # type: ignore[arg-type]
        lambda: StreamConfig(tmp_path, tmp_path / "s", rates=[1.0], cluster="local"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigError, match=r"cluster '(slurm-cpu|local)': a ClusterOptions"):
            make()


def test_bench_json_records_the_cluster_options_flat_as_before(tmp_path: Path) -> None:
    """bench.json's ``config`` keeps its fields: ``cluster`` the spec, the other cluster options
    beside it, in the order the BenchConfig had them."""
    cfg = BenchConfig(
        tmp_path,
        tmp_path / "b",
        cluster=ClusterOptions(spec="slurm-cpu", adapt=(1, 4), profile_file=tmp_path / "p.yaml"),
    )
    record = _config_record(cfg)
    assert list(record)[list(record).index("cluster") :][:5] == [
        "cluster",
        "scheduler_file",
        "adapt",
        "profile_file",
        "insecure",
    ]
    assert record["cluster"] == "slurm-cpu" and record["adapt"] == (1, 4)
    assert record["profile_file"] == str(tmp_path / "p.yaml") and record["insecure"] is False
    assert "loader" not in record and record["workers"] == cfg.workers
