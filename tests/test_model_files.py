"""Model directories: manifest, sha256 checked before loading, only safe formats loaded."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from trackflow.errors import ModelFileError
from trackflow.events import Event
from trackflow.files import sha256_file
from trackflow.pipeline import (
    EmbeddingNet,
    FeatureConfig,
    FilterNet,
    GraphBuildingConfig,
    InteractionGNN,
    Pipeline,
)
from trackflow.pipeline.model_files import (
    MANIFEST_NAME,
    StageEntry,
    load_model,
    read_manifest,
    save_model,
    shipped_models_dir,
    verify,
    write_manifest,
)
from trackflow.pipeline.threads import set_threads


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> None:
    set_threads(1)


def write_models(directory: Path, gnn_kind: str = "state_dict") -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    models = {
        "embedding": (EmbeddingNet(3, 32, 2, 8), {"in_features": 3, "hidden": 32, "n_layers": 2}),
        "filter": (FilterNet(3, 32, 2), {"in_features": 3, "hidden": 32, "n_layers": 2}),
        "gnn": (InteractionGNN(3, 16, 8), {"in_features": 3, "hidden": 16}),
    }
    entries = {}
    for stage, (module, kwargs) in models.items():
        kind = gnn_kind if stage == "gnn" else "state_dict"
        entries[stage] = save_model(module, directory, stage, kind=kind, kwargs=kwargs, config={"cut": 0.3})
    entries["embedding"].config = {}
    entries["graph_building"] = StageEntry(config={"radius": 0.05, "max_neighbours": 16})
    entries["labelling"] = StageEntry(config={"method": "cc", "cut": 0.3})
    write_manifest(
        directory,
        entries,
        features=FeatureConfig().to_dict(),
        training={"events": "test"},
        metrics={"edge_efficiency": 0.0},
    )
    return {stage: module for stage, (module, _) in models.items()}


def small_event(n: int = 800) -> Event:
    import pandas as pd

    rng = np.random.default_rng(0)
    r = rng.uniform(30, 1000, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    hits = pd.DataFrame(
        {
            "hit_id": np.arange(1, n + 1, dtype=np.int64),
            "x": (r * np.cos(phi)).astype(np.float32),
            "y": (r * np.sin(phi)).astype(np.float32),
            "z": rng.uniform(-1000, 1000, n).astype(np.float32),
            "volume_id": np.full(n, 8, dtype=np.int32),
            "layer_id": np.full(n, 2, dtype=np.int32),
            "module_id": np.ones(n, dtype=np.int32),
        }
    )
    return Event(5, hits)


@pytest.mark.parametrize("gnn_kind", ["state_dict", "torchscript"])
def test_load_gives_the_pipeline_that_was_saved(tmp_path: Path, gnn_kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        models = write_models(tmp_path, gnn_kind)
    loaded = Pipeline.load(tmp_path)
    assert loaded.models_dir == tmp_path
    assert loaded.stages["filter"].config.cut == 0.3  # the manifest's trained-with settings
    assert loaded.stages["graph_building"].config.radius == 0.05
    in_memory = Pipeline.from_modules(
        models["embedding"],
        models["filter"],
        models["gnn"],
        graph_building=GraphBuildingConfig(radius=0.05, max_neighbours=16),
        filter_config=loaded.stages["filter"].config,
        gnn_config=loaded.stages["gnn"].config,
        labelling=loaded.stages["labelling"].config,
    )
    event = small_event()
    a, b = loaded(event), in_memory(event)
    assert np.array_equal(a.track_labels, b.track_labels)
    assert a.counts == b.counts


def test_manifest_round_trip(tmp_path: Path) -> None:
    write_models(tmp_path)
    manifest = read_manifest(tmp_path)
    assert set(manifest.stages) == {"embedding", "graph_building", "filter", "gnn", "labelling"}
    assert manifest.stages["filter"].sha256 == sha256_file(tmp_path / "filter.pt")
    assert manifest.training == {"events": "test"}
    verify(manifest)


def test_a_changed_file_is_refused_before_loading(tmp_path: Path) -> None:
    write_models(tmp_path)
    weights = tmp_path / "filter.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256") as error:
        Pipeline.load(tmp_path)
    assert error.value.path == weights
    assert "\n" not in str(error.value)


def test_a_pickled_module_is_refused(tmp_path: Path) -> None:
    write_models(tmp_path)
    # a whole pickled module (code, not weights) with a manifest that matches it
    torch.save(EmbeddingNet(3, 32, 2, 8), tmp_path / "embedding.pt")
    manifest_path = tmp_path / MANIFEST_NAME
    raw = json.loads(manifest_path.read_text())
    raw["stages"]["embedding"]["sha256"] = sha256_file(tmp_path / "embedding.pt")
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(ModelFileError, match="pickled"):
        load_model(read_manifest(tmp_path), "embedding")


def test_weights_that_do_not_fit_the_class(tmp_path: Path) -> None:
    write_models(tmp_path)
    manifest_path = tmp_path / MANIFEST_NAME
    raw = json.loads(manifest_path.read_text())
    raw["stages"]["embedding"]["model"]["kwargs"]["hidden"] = 64
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(ModelFileError, match="do not fit EmbeddingNet"):
        load_model(read_manifest(tmp_path), "embedding")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.update(format="other/2"), "not a trackflow-models/1 manifest"),
        (lambda raw: raw["stages"]["gnn"].update(kind="pickle"), "kind"),
        (lambda raw: raw["stages"]["gnn"].pop("sha256"), "no sha256"),
        (lambda raw: raw["stages"]["gnn"]["model"].update({"class": "os.system"}), "model.class"),
    ],
)
def test_bad_manifests(tmp_path: Path, change: Callable[[dict], object], message: str) -> None:
    write_models(tmp_path)
    manifest_path = tmp_path / MANIFEST_NAME
    raw = json.loads(manifest_path.read_text())
    change(raw)
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(ModelFileError, match=message):
        Pipeline.load(tmp_path)


def test_missing_manifest_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"no manifest\.json"):
        Pipeline.load(tmp_path)
    write_models(tmp_path)
    (tmp_path / "gnn.pt").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        Pipeline.load(tmp_path)


def test_shipped_models_load_and_are_small() -> None:
    directory = shipped_models_dir()
    assert (directory / MANIFEST_NAME).is_file(), f"no shipped models in {directory}"
    total = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
    assert total <= 20 * 2**20
    pipeline = Pipeline.load()
    tracks = pipeline(small_event())
    assert tracks.track_labels.shape == (800,)
