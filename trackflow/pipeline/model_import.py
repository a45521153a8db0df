"""Bring your own Exa.TrkX / ACTS models: a manifest for a directory of TorchScript files.

ACTS's Exa.TrkX plugin and acorn export TorchScript ``embed.pt``, ``filter.pt`` and ``gnn.pt``:

- ``embed.pt``:  ``forward(x [N, F] float32) -> embedding [N, D]``;
- ``filter.pt``: ``forward(x, edge_index [2, E] int64) -> logits [E]``;
- ``gnn.pt``:    ``forward(x, edge_index) -> logits [E]`` (an optional third argument,
  ``edge_attr``, is not passed).

:func:`import_models` checks each file loads as TorchScript and answers these calls on a few
random hits, then writes a ``trackflow-models/1`` manifest (with sha256s) that
``Pipeline.load`` / ``trackflow reconstruct --models`` run. ``x`` is built from the hits as
``features`` scaled by ``scale`` (r / scale_r mm, phi / scale_phi rad, z / scale_z mm, ...), which
must be the inputs the models were trained on.

Only the stages present are imported; ``gnn.pt`` is required. What a directory lacks:

- with ``from_models`` (a trackflow model directory, e.g. the shipped one) whose features and
  scales equal ``features`` / ``scale``: its embedding and filter, and with its embedding its
  graph building, are used;
- no embedding: graph building must be a layer map, taken from ``from_models`` (the layer map
  describes the detector, not a model); the embedding stage is then skipped;
- no filter: every graph edge goes on to the GNN (as ACTS runs a module map with a GNN);
- with ``embed.pt``: graph building is by radius in its embedding space, and the radius must be
  given (``pipeline.graph_building.radius``; Exa.TrkX's service used 1.6).

``settings`` (``pipeline.<stage>.<field>`` -> value, e.g. the GNN and labelling cuts the models
were tuned with) go into the manifest as trained-with values; a user's own settings still win at
run time (:mod:`trackflow.pipeline.settings`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trackflow.errors import ConfigError, ModelFileError
from trackflow.files import atomic_path, sha256_file
from trackflow.pipeline import model_files
from trackflow.pipeline.features import FeatureConfig
from trackflow.pipeline.settings import STAGE_CONFIGS, resolve_settings

#: file names per model stage, as ACTS and acorn write them (trackflow's own name second)
STAGE_FILES: dict[str, tuple[str, ...]] = {
    "embedding": ("embed.pt", "embedding.pt"),
    "filter": ("filter.pt",),
    "gnn": ("gnn.pt",),
}
#: hits and edges of the trial call that checks a model's signature
_TRIAL_HITS, _TRIAL_EDGES = 8, 6


@dataclass
class ImportConfig:
    """What ``trackflow models import`` needs.

    ``source_dir``: the TorchScript files. ``features``: the models' input columns in order
    (names of :data:`trackflow.pipeline.features.KNOWN_FEATURES`); ``scale``: divisor per
    feature (r, z in mm, phi in rad). ``out_dir``: where the model directory is written (None:
    ``source_dir`` itself; elsewhere, the files are copied so the directory stands alone).
    ``from_models``: a trackflow model directory for what ``source_dir`` lacks (see module
    docstring). ``settings``: trained-with stage settings for the manifest. ``overwrite``:
    replace an existing ``manifest.json``.
    """

    source_dir: Path
    features: tuple[str, ...]
    scale: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None
    from_models: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.source_dir = Path(self.source_dir)
        self.out_dir = Path(self.out_dir) if self.out_dir is not None else self.source_dir
        self.features = tuple(self.features)
        if not self.features:
            raise ConfigError("--features: name the models' input features in order, e.g. r,phi,z")
        stage_keys = {f"pipeline.{s}" for s in STAGE_CONFIGS}
        for key in self.settings:
            if key.rpartition(".")[0] not in stage_keys:
                raise ConfigError(
                    f"--set {key}: the manifest takes stage settings (pipeline.<stage>.<field>); "
                    "feature scales go in --scale"
                )


@dataclass
class ImportResult:
    """The manifest written, and per stage where it came from (a file, ``from_models``, or
    ``none`` for a stage that runs without a model)."""

    manifest_path: Path
    origins: dict[str, str]


def _find(source_dir: Path, stage: str) -> Path | None:
    for name in STAGE_FILES[stage]:
        if (source_dir / name).is_file():
            return source_dir / name
    return None


def _trial_inputs(n_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((_TRIAL_HITS, n_features), generator=generator)
    edge_index = torch.tensor([[1, 2, 3, 5, 6, 7], [0, 1, 2, 4, 5, 6]], dtype=torch.int64)
    return x, edge_index


def check_signature(path: Path, stage: str, n_features: int) -> None:
    """Load ``path`` as TorchScript and call it as ``stage`` would on random inputs of
    ``n_features`` columns; raise ModelFileError naming the file when it does not answer the
    call (wrong feature count, another signature, another output shape)."""
    module = model_files.load_torchscript(path)
    x, edge_index = _trial_inputs(n_features)
    call = "forward(x)" if stage == "embedding" else "forward(x, edge_index)"
    try:
        with torch.inference_mode():
            out = module(x) if stage == "embedding" else module(x, edge_index)
    except Exception as err:  # TorchScript raises RuntimeError variants for shape mismatches
        problem = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ModelFileError(
            path,
            f"{stage}: {call} with x [{_TRIAL_HITS}, {n_features}] failed (are --features right?): {problem}",
        ) from err
    if not torch.is_tensor(out):
        raise ModelFileError(path, f"{stage}: {call} returned {type(out).__name__}, not a tensor")
    expected = "[N, D]" if stage == "embedding" else "logits [E]"
    good = (
        out.dim() == 2 and out.shape[0] == _TRIAL_HITS
        if stage == "embedding"
        else tuple(out.shape) == (_TRIAL_EDGES,)
    )
    if not good:
        raise ModelFileError(path, f"{stage}: {call} gave shape {list(out.shape)}, expected {expected}")


def _has_layer_map(manifest: model_files.Manifest) -> bool:
    return manifest.stage_config("graph_building").get("method") == "layer_map"


def _stage_settings(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    per_stage: dict[str, dict[str, Any]] = {stage: {} for stage in STAGE_CONFIGS}
    for key, value in settings.items():
        stage, _, name = key.removeprefix("pipeline.").partition(".")
        per_stage[stage][name] = value
    return per_stage


def import_models(cfg: ImportConfig) -> ImportResult:
    """Check the TorchScript models of ``cfg.source_dir`` and write their manifest (module
    docstring). Raises ModelFileError naming the file, or ConfigError naming the option."""
    source, out = cfg.source_dir, cfg.out_dir
    assert out is not None  # set by __post_init__
    features = FeatureConfig(names=cfg.features, scale=cfg.scale)
    manifest_path = out / model_files.MANIFEST_NAME
    if manifest_path.exists() and not cfg.overwrite:
        raise ModelFileError(manifest_path, "exists already; use --overwrite to replace it")
    found = {stage: _find(source, stage) for stage in model_files.MODEL_STAGES}
    if found["gnn"] is None:
        raise ModelFileError(
            source, "no gnn.pt: an Exa.TrkX / ACTS model directory holds gnn.pt (and embed.pt, filter.pt)"
        )
    for stage, path in found.items():
        if path is not None:
            check_signature(path, stage, features.n_features)

    donor = None if cfg.from_models is None else model_files.read_manifest(cfg.from_models)
    if donor is not None:
        model_files.verify(donor)
    donor_fits = donor is not None and FeatureConfig.from_dict(donor.features).to_dict() == features.to_dict()
    configs = _stage_settings(cfg.settings)
    stages: dict[str, model_files.StageEntry] = {}
    origins: dict[str, str] = {}
    copies: list[tuple[Path, Path]] = []

    for stage, path in found.items():
        if path is not None:
            target = out / path.name
            copies.append((path, target))
            stages[stage] = model_files.StageEntry(
                file=path.name,
                kind="torchscript",
                sha256=sha256_file(path),
                config=configs.get(stage, {}),
            )
            origins[stage] = str(path)
        elif donor is not None and donor_fits and donor.stages.get(stage) and donor.stages[stage].file:
            entry = donor.stages[stage]
            assert entry.file is not None
            copies.append((donor.directory / entry.file, out / f"{stage}.from-models.pt"))
            stages[stage] = model_files.StageEntry(
                file=f"{stage}.from-models.pt",
                kind=entry.kind,
                sha256=entry.sha256,
                model=entry.model,
                config={**entry.config, **configs.get(stage, {})},
            )
            origins[stage] = f"{donor.directory} ({entry.file})"
        else:
            stages[stage] = model_files.StageEntry(config=configs.get(stage, {}))
            origins[stage] = "none"

    graph_building = dict(configs["graph_building"])
    if found["embedding"] is not None:
        graph_building.setdefault("method", "radius")
        if "radius" not in graph_building:
            raise ConfigError(
                f"{found['embedding']}: give the graph-building radius in its embedding space, "
                "--set pipeline.graph_building.radius=R (Exa.TrkX's service used 1.6)"
            )
        origins["graph_building"] = "radius"
    elif donor is not None and (donor_fits or _has_layer_map(donor)):
        # a layer map describes the detector, not a model: any model of that detector may use it
        graph_building = {**donor.stage_config("graph_building"), **graph_building}
        origins["graph_building"] = f"{donor.directory} ({graph_building.get('method', 'radius')})"
    else:
        raise ConfigError(
            f"{source}: no embed.pt, so graph building needs a layer map: --from-models DIR "
            "(a trackflow model directory with one, e.g. 'shipped')"
        )
    stages["graph_building"] = model_files.StageEntry(config=graph_building)
    stages["labelling"] = model_files.StageEntry(config=configs["labelling"])
    origins["labelling"] = "settings" if configs["labelling"] else "default"

    out.mkdir(parents=True, exist_ok=True)
    for origin, target in copies:
        if origin.resolve() != target.resolve():
            shutil.copyfile(origin, target)
    manifest = model_files.Manifest(
        directory=out,
        stages={name: stages[name] for name in ("embedding", "graph_building", "filter", "gnn", "labelling")},
        features=features.to_dict(),
        training={
            "imported_from": str(source.resolve()),
            "origins": origins,
            "format": "TorchScript (Exa.TrkX / ACTS / acorn)",
        },
    )
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    # what a run would use: refuses now, naming the key, what reconstruct would refuse later
    try:
        resolve_settings(out)
    except Exception:
        manifest_path.unlink(missing_ok=True)
        raise
    return ImportResult(manifest_path=manifest_path, origins=origins)
