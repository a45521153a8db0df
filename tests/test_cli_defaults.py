"""Every default of the ``trackflow`` command comes from one place (issue 31).

A CLI option whose value is a setting of ``trackflow.yaml`` takes its default from there, through
:mod:`trackflow.config` (``default=setting(KEY)``), never from a literal that repeats the YAML.
The walk below visits every command and option of :mod:`trackflow.cli`: each option with a
default (not None, not a flag) is either mapped to its setting, and then must equal it, or listed
as no setting's, with the reason. A new option with a literal default fails here until its author
decides which it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import pytest

from trackflow import config
from trackflow.cli import main

#: (command path, option name) -> the setting of trackflow.yaml its default is
SETTINGS: dict[tuple[str, str], str] = {
    ("simulate", "seed"): "simulation.seed",
    ("simulate", "digitization"): "simulation.digitization",
    ("serve", "more_clusters"): "service.more_clusters",
    ("stream", "more_clusters"): "service.more_clusters",
}

#: (command path, option name) -> why its default is no setting of trackflow.yaml
NOT_SETTINGS: dict[tuple[str, str], str] = {
    ("simulate", "first_event"): "an id range of this one run",
    ("simulate", "workers"): "processes of this run (bench.workers is the bench's sweep)",
    ("train", "seed"): "training's own seed (TrainingConfig.seed); simulation.seed and stream.seed "
    "seed other things",
    ("reconstruct", "cluster"): "where the workers come from; no setting (cluster_options)",
    ("reconstruct", "threads_per_worker"): "Dask worker threads (trackflow.threads is torch's)",
    ("bench", "cluster"): "cluster_options",
    ("stream", "cluster"): "cluster_options",
    ("stream", "out_dir"): "a path of this run",
    ("stream", "workers"): "the cluster of this run (bench.workers is the bench's sweep)",
    ("stream", "threads_per_worker"): "Dask worker threads (trackflow.threads is torch's)",
    ("stream", "passes"): "how this run takes turns between rates",
    ("serve", "cluster"): "cluster_options",
    ("serve", "workers"): "the cluster of this server (bench.workers is the bench's sweep)",
    ("serve", "threads_per_worker"): "Dask worker threads (trackflow.threads is torch's)",
    ("serve", "mode"): "the service's mode (ServiceConfig.mode); workflow.mode is the batch workflow's",
}


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))
    else:
        yield " ".join(path), command


def option_defaults() -> dict[tuple[str, str], Any]:
    """(command path, option name) -> default, for every option with a default that is a value:
    not None, not a flag, not a required one; a repeatable option when it has a default (its
    values: a setting's list)."""
    found: dict[tuple[str, str], Any] = {}
    for path, command in walk(main):
        ctx = click.Context(command)
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag or param.required:
                continue
            value = param.get_default(ctx)
            if param.multiple and not isinstance(value, list | tuple):
                continue  # a repeatable option without a default (click's UNSET sentinel)
            if value is not None:
                found[path, str(param.name)] = value
    return found


def yaml_leaves() -> dict[str, Any]:
    """The settings as trackflow.yaml ships them (not as this environment may override them)."""
    return config.flatten(config.DEFAULTS["trackflow"])


def test_every_option_default_is_accounted_for() -> None:
    defaults = option_defaults()
    unaccounted = sorted(set(defaults) - set(SETTINGS) - set(NOT_SETTINGS))
    assert not unaccounted, (
        f"options with a literal default: {unaccounted}; take it from trackflow.yaml "
        "(default=setting(KEY)) and map it in SETTINGS, or list it in NOT_SETTINGS with the reason"
    )
    stale = sorted((set(SETTINGS) | set(NOT_SETTINGS)) - set(defaults))
    assert not stale, f"no such option with a default: {stale}"
    assert not set(SETTINGS) & set(NOT_SETTINGS)


def test_an_option_named_as_a_setting_is_mapped_or_explained() -> None:
    """The mapping covers every option whose name is a setting's name (``seed`` and
    ``simulation.seed``): where one is not mapped, NOT_SETTINGS says why."""
    names: dict[str, list[str]] = {}
    for key in yaml_leaves():
        names.setdefault(key.rpartition(".")[2], []).append(key)
    for (path, name), _value in option_defaults().items():
        if name in names and (path, name) not in SETTINGS:
            assert (path, name) in NOT_SETTINGS, f"{path} --{name}: is it {names[name]}?"


@pytest.mark.parametrize(("option", "key"), sorted(SETTINGS.items()))
def test_default_is_the_yaml_value(option: tuple[str, str], key: str) -> None:
    assert key in config.known_keys()
    with config.set(**{key: yaml_leaves()[key]}):  # this environment's own overrides aside
        assert option_defaults()[option] == yaml_leaves()[key]


@pytest.mark.parametrize(("option", "key"), sorted(SETTINGS.items()))
def test_default_follows_the_setting(option: tuple[str, str], key: str) -> None:
    """Read when the command runs, through dask.config: a config file or DASK_TRACKFLOW__...
    moves the CLI's default too."""
    other = {
        "simulation.seed": 7,
        "simulation.digitization": "geometric",
        "service.more_clusters": ["tcp://127.0.0.1:8786", "slurm-cpu"],
    }[key]
    with config.set(**{key: other}):
        assert option_defaults()[option] == other


def test_help_names_the_setting() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["simulate", "--help"])
    assert result.exit_code == 0, result.output
    assert "simulation.seed" in result.output
    assert "simulation.digitization" in result.output
    for command in ("serve", "stream"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "service.more_clusters" in result.output
