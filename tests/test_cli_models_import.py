"""``trackflow models import``: Exa.TrkX / ACTS TorchScript models that ``--models`` then runs.

The reference is the Exa.TrkX service's ``gnn.pt`` (REFERENCE.md §4; skipped outside CI when
../shared is missing): imported with its own features and scales, it must give the stored GNN
logits and run a whole reconstruction. Models scripted here (no shared data) cover a full
embed/filter/gnn directory and the one-line refusals.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_cli_settings import write_synthetic_events

from trackflow.cli import main
from trackflow.events import read_submission
from trackflow.files import sha256_file
from trackflow.pipeline import EmbeddingNet, FilterNet, HitGraph, InteractionGNN, Pipeline
from trackflow.pipeline.threads import set_threads

#: the service's inputs: r/3000 mm, phi/pi, z/400 mm (REFERENCE.md §4)
REFERENCE_SCALE = "r=3000,phi=3.141592653589793,z=400"


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> None:
    set_threads(1)


@pytest.fixture(scope="module")
def events_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_events(tmp_path_factory.mktemp("events"))


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def reconstruct(events: Path, out: Path, models: Path) -> dict:
    code, _, stderr = invoke(
        "reconstruct",
        str(events),
        "--out",
        str(out),
        "--models",
        str(models),
        "--mode",
        "direct",
        "--no-progress",
    )
    assert code == 0, stderr
    return json.loads((out / "report.json").read_text())


def script(module: torch.nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch deprecates TorchScript
        torch.jit.script(module.eval()).save(str(path))


# --------------------------------------------------------------------------- the reference gnn.pt
@pytest.fixture(scope="module")
def reference_gnn(exatrkx_dir: Path) -> Path:
    return exatrkx_dir / "exatrkx_pipeline" / "datanmodels" / "torchscript" / "gnn.pt"


@pytest.fixture(scope="module")
def imported_reference(reference_gnn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "exatrkx"
    code, stdout, stderr = invoke(
        "models",
        "import",
        str(reference_gnn.parent),
        "--features",
        "r,phi,z",
        "--scale",
        REFERENCE_SCALE,
        "--out",
        str(out),
        "--from-models",
        "shipped",
        "--set",
        "pipeline.gnn.cut=0.75",
        "--set",
        "pipeline.labelling.cut=0.75",
    )
    assert code == 0, stderr
    assert f"wrote {out / 'manifest.json'}" in stdout
    return out


def test_the_reference_gnn_gets_a_manifest_with_its_sha256(
    reference_gnn: Path, imported_reference: Path
) -> None:
    manifest = json.loads((imported_reference / "manifest.json").read_text())
    gnn = manifest["stages"]["gnn"]
    assert gnn["kind"] == "torchscript"
    assert gnn["sha256"] == sha256_file(reference_gnn) == sha256_file(imported_reference / gnn["file"])
    assert manifest["features"] == {
        "names": ["r", "phi", "z"],
        "scale": {"r": 3000.0, "phi": np.pi, "z": 400.0},
    }
    # no embed.pt or filter.pt beside it: the shipped layer map builds the graph, no filter
    assert "file" not in manifest["stages"]["embedding"] and "file" not in manifest["stages"]["filter"]
    assert manifest["stages"]["graph_building"]["config"]["method"] == "layer_map"
    assert manifest["stages"]["gnn"]["config"] == {"cut": 0.75}


def test_the_imported_gnn_gives_the_reference_logits(imported_reference: Path, exatrkx_dir: Path) -> None:
    outputs = exatrkx_dir / "triton_service" / "model_repos" / "inputs"
    features = np.loadtxt(
        exatrkx_dir / "exatrkx_pipeline" / "datanmodels" / "in_e1000.csv", delimiter=",", dtype=np.float32
    )
    edge_file = outputs / "applyfilter_output_EDGE_LIST_AFTER_FILTER.csv"
    edges = np.loadtxt(edge_file, delimiter=",").astype(np.int64)
    stored = np.loadtxt(outputs / "gnn_output_OUTPUT__0.csv", delimiter=",").astype(np.float32)
    pipeline = Pipeline.load(imported_reference)
    graph = HitGraph.from_features(torch.from_numpy(features))
    graph.edges = torch.from_numpy(edges)
    logits = pipeline.stages["gnn"].logits(graph).numpy()
    np.testing.assert_allclose(logits, stored, atol=1e-3)


def test_reconstruct_runs_the_imported_reference(
    imported_reference: Path, events_dir: Path, tmp_path: Path
) -> None:
    report = reconstruct(events_dir, tmp_path / "run", imported_reference)
    pipeline = report["pipeline"]
    assert pipeline["model_files"]["embedding"] is None and pipeline["model_files"]["filter"] is None
    assert pipeline["model_files"]["gnn"]["sha256"] == sha256_file(imported_reference / "gnn.pt")
    assert pipeline["stages"]["labelling"]["cut"] == 0.75
    assert pipeline["sources"]["pipeline.labelling.cut"] == "manifest"
    assert pipeline["features"]["scale"]["r"] == 3000.0
    submission = read_submission(tmp_path / "run" / "submission.csv")
    assert len(submission) == sum(e["hits"] for e in report["per_event"])
    # straight tracks through four layers: most of the 30 per event come out whole
    assert all(e["counts"]["edges_gnn"] > 0 for e in report["per_event"])


# --------------------------------------------------------------------------- models scripted here
@pytest.fixture(scope="module")
def acts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embed.pt / filter.pt / gnn.pt directory as ACTS exports it: 3 features in, logits out."""
    directory = tmp_path_factory.mktemp("acts")
    torch.manual_seed(3)
    script(EmbeddingNet(3, 32, 2, 8), directory / "embed.pt")
    script(FilterNet(3, 32, 2), directory / "filter.pt")
    script(InteractionGNN(3, 16, 2), directory / "gnn.pt")
    return directory


def test_a_full_acts_directory_runs_in_place(acts_dir: Path, events_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(acts_dir, models)
    code, stdout, stderr = invoke(
        "models",
        "import",
        str(models),
        "--features",
        "r,phi,z",
        "--scale",
        "r=1000,phi=3.14159,z=1000",
        "--set",
        "pipeline.graph_building.radius=0.3",
        "--set",
        "pipeline.filter.cut=0.1",
    )
    assert code == 0, stderr
    assert "graph_building: radius" in stdout
    report = reconstruct(events_dir, tmp_path / "run", models)
    files = report["pipeline"]["model_files"]
    assert {stage: f["file"] for stage, f in files.items()} == {
        "embedding": "embed.pt",
        "filter": "filter.pt",
        "gnn": "gnn.pt",
    }
    assert report["pipeline"]["stages"]["graph_building"]["method"] == "radius"
    assert report["pipeline"]["stages"]["graph_building"]["radius"] == 0.3
    assert report["events"]["done"] == 2


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({"embed.pt", "filter.pt"}, (), "no gnn.pt"),
        ({"gnn.pt"}, (), "no embed.pt, so graph building needs a layer map: --from-models"),
        ({"embed.pt", "gnn.pt"}, (), "embed.pt: give the graph-building radius"),
        ({"gnn.pt"}, ("--features", "r,phi,z,eta"), "gnn.pt: gnn: forward(x, edge_index) with x [8, 4]"),
    ],
)
def test_a_bad_import_is_one_line_naming_the_file(
    acts_dir: Path, tmp_path: Path, files: set[str], args: tuple[str, ...], message: str
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in files:
        shutil.copyfile(acts_dir / name, source / name)
    options = dict(zip(args[::2], args[1::2], strict=True))
    code, _, stderr = invoke(
        "models",
        "import",
        str(source),
        "--features",
        options.get("--features", "r,phi,z"),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2
    assert stderr.startswith("trackflow: error: ") and stderr.count("\n") == 1
    assert message in stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_file_that_is_not_torchscript_is_named(tmp_path: Path) -> None:
    (tmp_path / "gnn.pt").write_bytes(b"not a model")
    code, _, stderr = invoke("models", "import", str(tmp_path), "--features", "r,phi,z")
    assert code == 2
    assert f"{tmp_path / 'gnn.pt'}: not a TorchScript archive" in stderr


def test_every_models_command_has_help() -> None:
    for args in (["models", "--help"], ["models", "import", "--help"]):
        code, stdout, _ = invoke(*args)
        assert code == 0 and "Usage:" in stdout
