"""``trackflow train``'s layer-map and filter options reach :class:`TrainingConfig` as given, and
left out they keep its defaults (the ones their help names). Training itself is replaced: the
command's parsing is under test here, not the training (``tests/test_training.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from trackflow.cli import main
from trackflow.pipeline.training import TrainingConfig

#: option -> the TrainingConfig field (dotted: of its stage config) that the option sets
NEW_OPTIONS = {
    "layer_map_pt_min": "layer_map_pt_min",
    "layer_map_field_factor": "layer_map_field_factor",
    "layer_map_margin": "layer_map_margin",
    "retrain_filter": "retrain_filter",
    "filter_hidden": "filter.hidden",
    "filter_layers": "filter.n_layers",
    "max_fake_rate": "max_fake_rate",
    "max_duplicate_rate": "max_duplicate_rate",
}


def field(config: TrainingConfig, dotted: str) -> object:
    value: object = config
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[TrainingConfig]:
    """The TrainingConfig of each ``trackflow train`` call (nothing is trained)."""
    configs: list[TrainingConfig] = []

    def fake_train(config: TrainingConfig) -> Path:
        configs.append(config)
        return config.out_dir

    monkeypatch.setattr("trackflow.pipeline.training.train", fake_train)
    return configs


def train(tmp_path: Path, *args: str) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    command = ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--quiet", *args]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output


def test_the_options_reach_the_training_config(trained: list[TrainingConfig], tmp_path: Path) -> None:
    source = tmp_path / "gnn"
    source.mkdir()
    train(
        tmp_path,
        *("--gnn-from", str(source), "--retrain-filter"),
        *("--layer-map-pt-min", "0.7", "--layer-map-field-factor", "1.5", "--layer-map-margin", "0.2"),
        *("--filter-hidden", "64", "--filter-layers", "2"),
        *("--max-fake-rate", "0.008", "--max-duplicate-rate", "0.006"),
    )
    (config,) = trained
    assert config.layer_map_pt_min == 0.7
    assert config.layer_map_field_factor == 1.5
    assert config.layer_map_margin == 0.2
    assert config.filter.hidden == 64 and config.filter.n_layers == 2
    assert config.max_fake_rate == 0.008 and config.max_duplicate_rate == 0.006
    # --retrain-filter: a new filter on the --gnn-from directory's embedding
    assert config.retrain_filter is True
    assert config.embedding_from == source and config.filter_from is None


def test_left_out_they_keep_the_training_configs_defaults(
    trained: list[TrainingConfig], tmp_path: Path
) -> None:
    train(tmp_path)
    (config,) = trained
    default = TrainingConfig(tmp_path / "data", tmp_path / "out")
    for dotted in NEW_OPTIONS.values():
        assert field(config, dotted) == field(default, dotted), dotted


def test_the_help_names_the_defaults_that_apply(tmp_path: Path) -> None:
    """A default the help repeats (``default 0.9``) is the dataclass's; ``no cap`` is None."""
    command = main.commands["train"]
    assert isinstance(command, click.Command)
    helps = {param.name: getattr(param, "help", None) or "" for param in command.params}
    default = TrainingConfig(tmp_path / "data", tmp_path / "out")
    for option, dotted in NEW_OPTIONS.items():
        assert option in helps, option
        stated = re.search(r"default ([0-9.e+-]+)\)", helps[option])
        if option in ("layer_map_field_factor", "retrain_filter"):
            assert stated is None, option  # no number: no cap; a flag
        else:
            assert stated is not None, option
            assert float(stated.group(1)) == field(default, dotted), option
    assert "default: no cap" in helps["layer_map_field_factor"] and default.layer_map_field_factor is None
