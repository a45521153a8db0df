"""Model files: a directory of weights plus ``manifest.json``, checked before anything is loaded.

Layout of a model directory::

    manifest.json
    embedding.pt   filter.pt   gnn.pt      (names are free; the manifest points at them)

``manifest.json``::

    {"format": "trackflow-models/1",
     "features": {"names": ["r", "phi", "z"], "scale": {"r": 1000.0, "phi": 3.14159, "z": 1000.0}},
     "stages": {
        "embedding": {"file": "embedding.pt", "kind": "state_dict", "sha256": "...",
                      "model": {"class": "EmbeddingNet", "kwargs": {"hidden": 256, ...}},
                      "config": {}},
        "graph_building": {"config": {"radius": 0.1, "max_neighbours": 64}},
        "filter": {"file": ..., "model": {"class": "FilterNet", ...}, "config": {"cut": 0.2}},
        "gnn":    {"file": ..., "kind": "torchscript", "sha256": "...", "config": {"cut": 0.5}},
        "labelling": {"config": {"method": "cc", "cut": 0.5}}},
     "training": {...}, "metrics": {...}}

``kind`` is ``"state_dict"`` (loaded with ``torch.load(weights_only=True)`` into the named class
of :data:`MODEL_CLASSES` built with ``kwargs``) or ``"torchscript"`` (``torch.jit.load``). Pickled
modules (``torch.save(model)``) are refused: unpickling runs arbitrary code. Every file's sha256
is checked against the manifest before it is opened. ``config`` holds the stage-config fields
the models were trained with (cuts, radius, ...); settings given to ``Pipeline.load``
(``overrides``) and the user's own dask config win over them (:mod:`trackflow.pipeline.settings`).
``embedding`` and ``filter`` may have no file: the stage then runs without a model (no embedding:
layer-map graph building; no filter: every edge goes on to the GNN).
``trackflow models import`` writes such a manifest for Exa.TrkX / ACTS TorchScript files
(:mod:`trackflow.pipeline.model_import`).
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trackflow.errors import ModelFileError
from trackflow.files import sha256_file
from trackflow.pipeline.embedding import EmbeddingNet
from trackflow.pipeline.filter import FilterNet
from trackflow.pipeline.gnn import InteractionGNN

MANIFEST_NAME = "manifest.json"
FORMAT = "trackflow-models/1"
MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "EmbeddingNet": EmbeddingNet,
    "FilterNet": FilterNet,
    "InteractionGNN": InteractionGNN,
}
MODEL_STAGES = ("embedding", "filter", "gnn")
KINDS = ("state_dict", "torchscript")


def shipped_models_dir() -> Path:
    """The models shipped inside the package (``trackflow/pipeline/models``)."""
    return Path(__file__).with_name("models")


@dataclass
class StageEntry:
    """One stage of a manifest: its weight file (if any), how to load it, its stage config."""

    file: str | None = None
    kind: str | None = None
    sha256: str | None = None
    model: dict[str, Any] | None = None  # {"class": ..., "kwargs": {...}} for state dicts
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"config": self.config}
        if self.file is not None:
            out |= {"file": self.file, "kind": self.kind, "sha256": self.sha256}
        if self.model is not None:
            out["model"] = self.model
        return out


@dataclass
class Manifest:
    """A parsed ``manifest.json`` (see module docstring); ``directory`` is where it was read."""

    directory: Path
    stages: dict[str, StageEntry]
    features: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def stage_config(self, stage: str) -> dict[str, Any]:
        entry = self.stages.get(stage)
        return dict(entry.config) if entry else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": self.features,
            "stages": {name: e.to_dict() for name, e in self.stages.items()},
            "training": self.training,
            "metrics": self.metrics,
        }


def read_manifest(models_dir: str | Path) -> Manifest:
    """Parse ``models_dir/manifest.json``; raise ModelFileError naming the file if it is unusable."""
    directory = Path(models_dir)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ModelFileError(path, "no manifest.json in the model directory")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelFileError(path, f"unreadable manifest: {err}") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelFileError(path, f"not a {FORMAT} manifest (format={raw.get('format')!r})")
    stages: dict[str, StageEntry] = {}
    for name, spec in (raw.get("stages") or {}).items():
        if not isinstance(spec, Mapping):
            raise ModelFileError(path, f"stage {name!r}: expected an object")
        entry = StageEntry(
            file=spec.get("file"),
            kind=spec.get("kind"),
            sha256=spec.get("sha256"),
            model=spec.get("model"),
            config=dict(spec.get("config") or {}),
        )
        if entry.file is not None:
            if entry.kind not in KINDS:
                raise ModelFileError(path, f"stage {name!r}: kind {entry.kind!r} not in {KINDS}")
            if not entry.sha256:
                raise ModelFileError(path, f"stage {name!r}: no sha256 for {entry.file}")
            if entry.kind == "state_dict" and (
                not entry.model or entry.model.get("class") not in MODEL_CLASSES
            ):
                raise ModelFileError(
                    path, f"stage {name!r}: state dict needs model.class in {sorted(MODEL_CLASSES)}"
                )
        stages[name] = entry
    return Manifest(
        directory=directory,
        stages=stages,
        features=dict(raw.get("features") or {}),
        training=dict(raw.get("training") or {}),
        metrics=dict(raw.get("metrics") or {}),
    )


def verify(manifest: Manifest) -> None:
    """Check every weight file exists and matches its sha256 (raises ModelFileError)."""
    for name, entry in manifest.stages.items():
        if entry.file is None:
            continue
        path = manifest.directory / entry.file
        if not path.is_file():
            raise ModelFileError(path, f"weight file of stage {name!r} is missing")
        actual = sha256_file(path)
        if actual != entry.sha256:
            expected = entry.sha256 or "(none)"  # read_manifest refuses a file without one
            raise ModelFileError(
                path, f"sha256 {actual[:12]}… does not match the manifest's {expected[:12]}…"
            )


def load_model(manifest: Manifest, stage: str, device: str | torch.device = "cpu") -> nn.Module:
    """The model of ``stage``, loaded safely after its sha256 check, in eval mode on ``device``."""
    entry = manifest.stages.get(stage)
    if entry is None or entry.file is None:
        raise ModelFileError(manifest.directory / MANIFEST_NAME, f"no model file for {stage!r}")
    path = manifest.directory / entry.file
    if not path.is_file():
        raise ModelFileError(path, f"weight file of stage {stage!r} is missing")
    if sha256_file(path) != entry.sha256:
        raise ModelFileError(path, "sha256 does not match the manifest (file changed or corrupt)")
    if entry.kind == "torchscript":
        return load_torchscript(path, device)
    assert entry.model is not None  # checked by read_manifest
    module = MODEL_CLASSES[entry.model["class"]](**entry.model.get("kwargs", {}))
    state = load_state_dict(path)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        problem = str(err).splitlines()[0] if str(err) else "state dict does not fit"
        raise ModelFileError(path, f"weights do not fit {entry.model['class']}: {problem}") from err
    return module.to(device).eval()


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict through ``torch.load(weights_only=True)``: tensors only, no code runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses any pickled object other than tensors and plain containers
        raise ModelFileError(path, "refused: pickled code, not a plain state dict") from err
    except Exception as err:  # torch raises several types for corrupt files
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFileError(path, f"unreadable state dict: {problem}") from err
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelFileError(path, "not a state dict of tensors")
    return dict(state)


def load_torchscript(path: Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """A TorchScript model (``torch.jit.load``: TorchScript code, no Python pickle)."""
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript in favour of torch.export, but TorchScript is
            # what existing Exa.TrkX models ship as (gnn.pt); loading it stays supported
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=torch.device(device))
    except Exception as err:  # jit raises RuntimeError and ValueError variants
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFileError(path, f"not a TorchScript archive: {problem}") from err
    return module.eval()


def script(module: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script(module)``, without its deprecation warning (see load_torchscript)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def save_model(
    module: nn.Module,
    models_dir: str | Path,
    stage: str,
    *,
    kind: str = "state_dict",
    config: Mapping[str, Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> StageEntry:
    """Write ``module`` as ``<stage>.pt`` (state dict or TorchScript) and return its manifest entry.

    For state dicts, ``kwargs`` are the constructor arguments of the module's class (they go in
    the manifest so the loader can rebuild it).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    directory = Path(models_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stage}.pt"
    model = None
    if kind == "torchscript":
        scripted = module if isinstance(module, torch.jit.ScriptModule) else script(module)
        scripted.save(str(path))
    else:
        class_name = type(module).__name__
        if class_name not in MODEL_CLASSES:
            raise ValueError(f"{class_name} is not one of {sorted(MODEL_CLASSES)}")
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        torch.save(state, path)
        model = {"class": class_name, "kwargs": dict(kwargs or {})}
    return StageEntry(
        file=path.name, kind=kind, sha256=sha256_file(path), model=model, config=dict(config or {})
    )


def write_manifest(
    models_dir: str | Path,
    stages: Mapping[str, StageEntry],
    *,
    features: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``models_dir/manifest.json`` (stage entries from :func:`save_model`, plus configs)."""
    manifest = Manifest(
        directory=Path(models_dir),
        stages=dict(stages),
        features=dict(features or {}),
        training=dict(training or {}),
        metrics=dict(metrics or {}),
    )
    path = Path(models_dir) / MANIFEST_NAME
    path.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n")
    return path
