"""``trackflow serve`` and ``trackflow stream --also-cluster SPEC``: the service spans these
clusters too, through the setting ``service.more_clusters`` that ``Service.open`` reads.

Cheap: ``Service.open`` is replaced by one that records the cluster and the setting it sees and
stops the command there. That ``Service.open`` really spans the setting's clusters is
``tests/test_service_clusters.py`` (two LocalClusters).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from trackflow import config
from trackflow.cli import main
from trackflow.errors import ConfigError
from trackflow.service.service import Service

STOP = "stopped where the service would open"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, list[str]]]:
    """What each ``Service.open`` call got: (its cluster, ``service.more_clusters`` then)."""
    calls: list[tuple[Any, list[str]]] = []

    @contextlib.contextmanager
    def fake_open(cls: type[Service], cluster: Any = "local", *args: Any, **kwargs: Any) -> Iterator[Service]:
        calls.append((cluster, list(config.get("service.more_clusters"))))
        raise ConfigError(STOP)
        yield  # a generator, as the real one

    monkeypatch.setattr(Service, "open", classmethod(fake_open))
    # serve installs its SIGINT / SIGTERM handlers: not in the test process for good
    monkeypatch.setattr(signal, "signal", lambda *_: None)
    # stream reads its events before it opens the service; which events is not the point here
    monkeypatch.setattr("trackflow.service.stream.load_events", lambda *_: [])
    return calls


def invoke(command: str, *args: str, tmp_path: Path) -> None:
    """Run ``trackflow COMMAND ARGS`` up to the fake Service.open (exit 2, its one line)."""
    if command == "stream":
        args = (str(tmp_path), "--rate", "1", "--out", str(tmp_path / "out"), *args)
    result = CliRunner().invoke(main, [command, *args])
    assert result.exit_code == 2, result.output
    assert f"trackflow: error: {STOP}" in result.output


@pytest.mark.parametrize("command", ["serve", "stream"])
def test_also_cluster_reaches_service_open(
    command: str, opened: list[tuple[Any, list[str]]], tmp_path: Path
) -> None:
    invoke(command, "--also-cluster", "tcp://10.0.0.2:8786", "--also-cluster", "slurm-cpu", tmp_path=tmp_path)
    assert opened == [("local", ["tcp://10.0.0.2:8786", "slurm-cpu"])]
    assert config.get("service.more_clusters") == []  # set for the call only


@pytest.mark.parametrize("command", ["serve", "stream"])
def test_without_the_option_the_setting_holds_and_the_option_replaces_it(
    command: str, opened: list[tuple[Any, list[str]]], tmp_path: Path
) -> None:
    invoke(command, tmp_path=tmp_path)
    with config.set(**{"service.more_clusters": ["tcp://10.0.0.3:8786"]}):
        invoke(command, tmp_path=tmp_path)
        invoke(command, "--also-cluster", "tcp://10.0.0.4:8786", tmp_path=tmp_path)
    assert [more for _cluster, more in opened] == [[], ["tcp://10.0.0.3:8786"], ["tcp://10.0.0.4:8786"]]


def test_another_cluster_beside_a_scheduler_file_is_refused(
    opened: list[tuple[Any, list[str]]], tmp_path: Path
) -> None:
    # open_cluster joins the scheduler file whatever its spec: both "clusters" would be that one
    result = CliRunner().invoke(
        main, ["serve", "--scheduler-file", str(tmp_path / "scheduler.json"), "--also-cluster", "slurm-cpu"]
    )
    assert result.exit_code == 2, result.output
    assert "--also-cluster / service.more_clusters" in result.output
    assert "would join that same scheduler" in result.output
    assert opened == []
