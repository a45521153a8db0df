"""The effective settings of every stage, and where each value came from.

One precedence, for every field of every stage config and for the feature scales:

1. an explicit argument (``Pipeline.load(overrides=...)``, ``trackflow reconstruct --set``);
2. the user's dask config: a config file, ``DASK_TRACKFLOW__...`` environment variables,
   ``dask.config.set`` or an edit of ``trackflow/trackflow.yaml`` — any non-null value, since
   every pipeline setting ships null (see :mod:`trackflow.config`), so a user value wins even
   when it equals the built-in default;
3. the value the models were trained with (``manifest.json``, ``stages.<stage>.config``);
4. the built-in default of the stage's config dataclass.

:func:`resolve_settings` applies it once and returns :class:`PipelineSettings`: the stage
configs, the features, the model files with their sha256 and, per dotted key, the source
(``cli`` | ``argument`` | ``user`` | ``manifest`` | ``default``). A workflow resolves on the
client and ships the result to its workers (:meth:`Pipeline.from_settings`), so every worker
runs what ``report.json`` records, whatever the worker's own dask config says.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import trackflow.config
from trackflow.errors import ConfigError, ModelFileError
from trackflow.files import sha256_file
from trackflow.pipeline import model_files
from trackflow.pipeline.features import BASE_FEATURES, FeatureConfig
from trackflow.pipeline.filter import FilterConfig
from trackflow.pipeline.gnn import GNNConfig
from trackflow.pipeline.graph_building import GraphBuildingConfig
from trackflow.pipeline.labelling import LabellingConfig

#: stage -> its config dataclass; the settings of a stage are ``pipeline.<stage>.<field>``
STAGE_CONFIGS: dict[str, type] = {
    "graph_building": GraphBuildingConfig,
    "filter": FilterConfig,
    "gnn": GNNConfig,
    "labelling": LabellingConfig,
}
#: feature scales a setting may name: ``pipeline.feature_scale.<name>`` (r, z in mm; phi in rad)
SCALED_FEATURES = ("r", "phi", "z", "eta")
#: where a value came from, strongest first
SOURCES = ("cli", "argument", "user", "manifest", "default")


def setting_keys() -> list[str]:
    """Every dotted key :func:`resolve_settings` resolves (``pipeline.filter.cut``, ...)."""
    keys = [f"pipeline.feature_scale.{name}" for name in SCALED_FEATURES]
    for stage, cls in STAGE_CONFIGS.items():
        keys += [f"pipeline.{stage}.{f.name}" for f in fields(cls)]
    return keys


def _coerce(key: str, annotation: str, value: Any) -> Any:
    """``value`` as the field's type (``float``, ``int``, ``str``, ``X | None``, ``dict``)."""
    optional = annotation.replace(" ", "").endswith("|None")
    base = annotation.split("|", maxsplit=1)[0].strip()
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: must not be null")
    try:
        if base == "float" and not isinstance(value, bool):
            return float(value)
        if base == "int" and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if base == "str" and isinstance(value, str):
            return value
        if base == "dict" and isinstance(value, Mapping):
            return dict(value)
        if base == "bool" and isinstance(value, bool):
            return value
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{key}: expected {annotation}, got {value!r}")


@dataclass
class PipelineSettings:
    """What a pipeline runs with: features, stage configs, model files, and each value's source.

    ``model_files``: stage -> ``{"file", "kind", "sha256"}`` for ``embedding``, ``filter`` and
    ``gnn``; a stage without a file runs without a model (no embedding: a layer-map graph
    building; no filter: every edge goes on to the GNN). ``sources``: dotted key -> one of
    :data:`SOURCES`. Picklable: a workflow ships it to its workers.
    """

    models_dir: Path
    manifest_sha256: str
    features: FeatureConfig
    graph_building: GraphBuildingConfig
    filter: FilterConfig
    gnn: GNNConfig
    labelling: LabellingConfig
    model_files: dict[str, dict[str, str] | None] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def stage_config(self, stage: str) -> Any:
        """The config dataclass of ``stage``."""
        return getattr(self, stage)

    def values(self) -> dict[str, Any]:
        """The effective values (no sources): what makes two runs' outputs the same."""
        out = self.to_dict()
        out.pop("sources")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``report.json`` records under ``pipeline`` (a layer map as its pair
        count and sha256, triplet scales as their cuts and sha256: the tables themselves are in
        the manifest, whose sha256 is recorded too)."""
        stages: dict[str, Any] = {}
        for stage in STAGE_CONFIGS:
            values = asdict(self.stage_config(stage))
            if values.get("layer_map") is not None:
                values["layer_map"] = _layer_map_summary(values["layer_map"])
            if values.get("triplets") is not None:
                values["triplets"] = _triplets_summary(values["triplets"])
            stages[stage] = values
        return {
            "models_dir": str(self.models_dir),
            "manifest_sha256": self.manifest_sha256,
            "features": self.features.to_dict(),
            "model_files": dict(self.model_files),
            "stages": stages,
            "sources": dict(self.sources),
        }


def _canonical_sha256(table: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(table, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _layer_map_summary(layer_map: Mapping[str, Any]) -> dict[str, Any]:
    return {"pairs": len(layer_map.get("pairs", [])), "sha256": _canonical_sha256(layer_map)}


def _triplets_summary(triplets: Mapping[str, Any]) -> dict[str, Any]:
    return {"chi2_cut": triplets.get("chi2_cut"), "sha256": _canonical_sha256(triplets)}


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    known = set(setting_keys())
    for key in overrides:
        if key not in known:
            parent = key.rpartition(".")[0]
            near = sorted(k.rpartition(".")[2] for k in known if k.startswith(f"{parent}."))
            hint = f"; {parent} has {', '.join(near)}" if near else "; settings are pipeline.<stage>.<field>"
            raise ConfigError(f"setting {key}: not a pipeline setting{hint}")


def resolve_settings(
    models_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    override_source: str = "argument",
) -> PipelineSettings:
    """The effective settings of the models in ``models_dir`` (None: the shipped models).

    ``overrides``: dotted keys of :func:`setting_keys` -> values, the strongest source, recorded
    as ``override_source`` (``cli`` for the command line). Raises ConfigError naming the key for
    an unknown key or a value of the wrong type, ModelFileError for an unusable manifest.
    """
    if override_source not in SOURCES[:2]:
        raise ValueError(f"override_source must be one of {SOURCES[:2]}")
    directory = Path(models_dir) if models_dir is not None else model_files.shipped_models_dir()
    manifest = model_files.read_manifest(directory)
    overrides = dict(overrides or {})
    _check_overrides(overrides)
    sources: dict[str, str] = {}

    def pick(key: str, annotation: str, manifest_values: Mapping[str, Any], name: str) -> tuple[bool, Any]:
        """(given, value) of one key by the precedence; not given = the dataclass default."""
        if key in overrides:
            sources[key] = override_source
            return True, _coerce(key, annotation, overrides[key])
        user = trackflow.config.get(key, None)
        if user is not None:
            sources[key] = "user"
            return True, _coerce(key, annotation, user)
        if name in manifest_values:
            sources[key] = "manifest"
            where = f"{directory / model_files.MANIFEST_NAME}: {key}"
            return True, _coerce(where, annotation, manifest_values[name])
        sources[key] = "default"
        return False, None

    configs: dict[str, Any] = {}
    for stage, cls in STAGE_CONFIGS.items():
        trained_with = manifest.stage_config(stage)
        given = {}
        for f in fields(cls):
            chosen, value = pick(f"pipeline.{stage}.{f.name}", str(f.type), trained_with, f.name)
            if chosen:
                given[f.name] = value
        # the fields left out are unset everywhere, so the dataclass gives its built-in default
        configs[stage] = cls(**given)

    manifest_scale = dict(manifest.features.get("scale") or {})
    scale: dict[str, float] = {}
    for name in SCALED_FEATURES:
        chosen, value = pick(f"pipeline.feature_scale.{name}", "float", manifest_scale, name)
        if chosen:
            scale[name] = value
    names = manifest.features.get("names")
    sources["pipeline.features.names"] = "manifest" if names else "default"
    features = FeatureConfig(names=tuple(names or BASE_FEATURES), scale=scale)

    files: dict[str, dict[str, str] | None] = {}
    for stage in model_files.MODEL_STAGES:
        entry = manifest.stages.get(stage)
        files[stage] = (
            None
            if entry is None or entry.file is None
            else {"file": entry.file, "kind": str(entry.kind), "sha256": str(entry.sha256)}
        )
    if files.get("gnn") is None:
        raise ModelFileError(directory / model_files.MANIFEST_NAME, "no model file for the gnn stage")
    if files.get("embedding") is None and configs["graph_building"].method != "layer_map":
        raise ModelFileError(
            directory / model_files.MANIFEST_NAME,
            "no embedding model: graph building then needs method layer_map (and its layer map), "
            f"not {configs['graph_building'].method!r}",
        )
    return PipelineSettings(
        models_dir=directory,
        manifest_sha256=sha256_file(directory / model_files.MANIFEST_NAME),
        features=features,
        model_files=files,
        sources=sources,
        **configs,
    )
