"""One precedence for every pipeline setting: argument > user (dask config, env) > manifest > default.

The models here are the shipped ones, copied to a temporary directory whose manifest says other
values (radius 0.12, filter cut 0.35) than the built-in defaults (0.1, 0.2), so each test can
tell which source won. Also: the resolved settings, shipped to a Dask worker, are what the
worker runs, whatever the worker's own config says.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import dask.config
import pytest

import trackflow.config
from trackflow.errors import ConfigError, ModelFileError
from trackflow.pipeline import Pipeline
from trackflow.pipeline.model_files import MANIFEST_NAME, shipped_models_dir
from trackflow.pipeline.settings import resolve_settings, setting_keys

MANIFEST_RADIUS = 0.12
MANIFEST_FILTER_CUT = 0.35
DEFAULT_RADIUS = 0.1  # GraphBuildingConfig's built-in default
DEFAULT_FILTER_CUT = 0.2  # FilterConfig's built-in default


def models_with_other_values(directory: Path, **stage_values: dict) -> Path:
    """A copy of the shipped models in ``directory`` whose manifest sets ``stage_values``
    (stage -> {field: value}) on top of its own trained-with values."""
    shutil.copytree(shipped_models_dir(), directory)
    path = directory / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    for stage, values in stage_values.items():
        manifest["stages"][stage]["config"].update(values)
    path.write_text(json.dumps(manifest, indent=2))
    return directory


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return models_with_other_values(
        tmp_path / "models",
        graph_building={"radius": MANIFEST_RADIUS},
        filter={"cut": MANIFEST_FILTER_CUT},
    )


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set DASK_* variables with ``environment.setenv``, then ``dask.config.refresh()``: dask
    reads them as at start-up. The config is refreshed again afterwards."""
    yield monkeypatch
    monkeypatch.undo()
    dask.config.refresh()


def test_every_pipeline_setting_ships_unset() -> None:
    """So any value the user gives — file, env, dask.config.set or an edit of trackflow.yaml —
    is told apart from the packaged default, even when equal to it."""
    pipeline = trackflow.config.DEFAULTS["trackflow"]["pipeline"]
    for key in setting_keys():
        node = pipeline
        for part in key.split(".")[1:]:
            node = node[part]
        assert node is None, key


def test_the_manifest_wins_over_the_built_in_default(models: Path) -> None:
    settings = resolve_settings(models)
    assert settings.graph_building.radius == MANIFEST_RADIUS
    assert settings.filter.cut == MANIFEST_FILTER_CUT
    assert settings.sources["pipeline.graph_building.radius"] == "manifest"
    # a field the manifest leaves out gets the built-in default, and says so
    assert settings.filter.chunk_size == 200_000
    assert settings.sources["pipeline.filter.chunk_size"] == "default"


def test_an_environment_value_equal_to_the_default_wins_over_the_manifest(
    models: Path, environment: pytest.MonkeyPatch
) -> None:
    environment.setenv("DASK_TRACKFLOW__PIPELINE__GRAPH_BUILDING__RADIUS", str(DEFAULT_RADIUS))
    dask.config.refresh()
    pipeline = Pipeline.load(models)
    assert pipeline.stages["graph_building"].config.radius == DEFAULT_RADIUS
    assert pipeline.settings is not None
    assert pipeline.settings.sources["pipeline.graph_building.radius"] == "user"
    # the other settings still come from the manifest
    assert pipeline.stages["filter"].config.cut == MANIFEST_FILTER_CUT


def test_a_dask_config_value_equal_to_the_default_wins_over_the_manifest(models: Path) -> None:
    with trackflow.config.set(**{"pipeline.filter.cut": DEFAULT_FILTER_CUT}):
        settings = resolve_settings(models)
    assert settings.filter.cut == DEFAULT_FILTER_CUT
    assert settings.sources["pipeline.filter.cut"] == "user"


def test_an_explicit_argument_wins_over_the_user_config(models: Path) -> None:
    with trackflow.config.set(**{"pipeline.graph_building.radius": DEFAULT_RADIUS}):
        pipeline = Pipeline.load(models, overrides={"pipeline.graph_building.radius": 0.09})
    assert pipeline.stages["graph_building"].config.radius == 0.09
    assert pipeline.settings is not None
    assert pipeline.settings.sources["pipeline.graph_building.radius"] == "argument"


def test_feature_scales_follow_the_same_precedence(models: Path) -> None:
    with trackflow.config.set(**{"pipeline.feature_scale.z": 400.0}):
        settings = resolve_settings(models, {"pipeline.feature_scale.r": 3000})
    assert settings.features.scale["r"] == 3000.0
    assert settings.features.scale["z"] == 400.0
    assert settings.sources["pipeline.feature_scale.r"] == "argument"
    assert settings.sources["pipeline.feature_scale.z"] == "user"
    assert settings.sources["pipeline.feature_scale.phi"] == "manifest"


def test_unknown_keys_and_bad_values_name_the_key(models: Path) -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.graph_building\.radiuz.*radius") as error:
        resolve_settings(models, {"pipeline.graph_building.radiuz": 0.1})
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"pipeline\.filter\.cut: expected float"):
        resolve_settings(models, {"pipeline.filter.cut": "tight"})
    with pytest.raises(ConfigError, match=r"pipeline\.filter\.cut: must be in"):
        resolve_settings(models, {"pipeline.filter.cut": 1.5})


def test_the_resolved_settings_are_what_a_worker_runs(models: Path) -> None:
    """The worker starts before the user's setting exists, so its own config lacks it: the
    settings resolved on the client still decide its pipeline."""
    from distributed import Client, LocalCluster

    from trackflow.run.plugin import PipelinePlugin

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        with trackflow.config.set(**{"pipeline.graph_building.radius": DEFAULT_RADIUS}):
            settings = resolve_settings(models, {"pipeline.filter.cut": 0.25})
        plugin = PipelinePlugin(models, "cpu", 1, settings=settings)
        client.register_plugin(plugin)

        def seen(dask_worker, name: str) -> tuple[float | None, float, float]:
            pipeline = dask_worker.plugins[name].pipeline
            own = trackflow.config.get("pipeline.graph_building.radius", None)
            return own, pipeline.stages["graph_building"].config.radius, pipeline.stages["filter"].config.cut

        ((own, radius, cut),) = client.run(seen, name=plugin.name).values()
    assert own is None  # the worker's own config never had the user's value ...
    assert radius == DEFAULT_RADIUS  # ... but its pipeline runs it
    assert cut == 0.25


def test_models_other_than_those_resolved_are_refused(models: Path) -> None:
    """A worker whose model directory holds other files than the client resolved (another
    checkout, a retrained model) refuses to run them instead of reporting the wrong sha256."""
    settings = resolve_settings(models)
    recorded = settings.model_files["filter"]
    assert recorded is not None
    recorded["sha256"] = "0" * 64
    with pytest.raises(ModelFileError, match="stage 'filter' changed since its settings were resolved"):
        Pipeline.from_settings(settings)
