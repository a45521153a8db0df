"""``trackflow export triton`` (issue 30): the repositories it writes load in the real
``tritonserver`` bundled with nvidia-pytriton (from ``make venv-triton``'s environment, built by
``make test``), and answer the same client as ``trackflow serve`` with the pipeline's own tracks.
No mock: a real Triton, its real Python backend, real torch. Behaviour only, never timings."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient  # pinned in the test extra: missing fails, never skips
from click.testing import CliRunner
from conftest import REPO, gun_events, hits_of, require
from tritonclient.utils import InferenceServerException

import trackflow
from trackflow.cli import main
from trackflow.errors import ConfigError, ModelFileError
from trackflow.pipeline.model_files import shipped_models_dir
from trackflow.service.protocol import INPUTS
from trackflow.service.triton import TritonExportConfig, TritonServer, export_triton, triton_environment
from trackflow.service.triton.models import instance_device
from trackflow.service.triton.server import TritonStartError

#: the environment `make venv-triton` builds (TRACKFLOW_TRITON_PYTHON to use another)
TRITON_PYTHON = Path(os.environ.get("TRACKFLOW_TRITON_PYTHON", REPO / ".venv" / "triton" / "bin" / "python"))
NUMPY = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32}


@pytest.fixture(scope="module")
def environment() -> object:
    require(TRITON_PYTHON.exists(), f"no Triton environment at {TRITON_PYTHON} (make venv-triton)")
    return triton_environment(TRITON_PYTHON)


@pytest.fixture(scope="module")
def events(sim_detectors: Path, tmp_path_factory: pytest.TempPathFactory) -> list[trackflow.Event]:
    """Small particle-gun events (ACTS, ~700 hits each)."""
    return hits_of(gun_events(tmp_path_factory, "triton-events", seed=6, pileup=5, events=2))


@pytest.fixture(scope="module")
def expected(events: list[trackflow.Event]) -> list[np.ndarray]:
    pipeline = trackflow.Pipeline.load()
    return [np.asarray(pipeline(event).track_labels) for event in events]


def hit_inputs(hits: pd.DataFrame) -> list[object]:
    inputs = []
    for name, types in INPUTS.items():
        values = hits[name].to_numpy().astype(NUMPY[types[0]])
        tensor = httpclient.InferInput(name, list(values.shape), types[0])
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def check_repository(server: TritonServer, events: list, expected: list[np.ndarray]) -> None:
    """The model answers every event with the pipeline's tracks; a bad request gets an error
    naming the problem and the model goes on serving."""
    client = httpclient.InferenceServerClient(server.url, network_timeout=300)
    try:
        assert client.is_server_ready()
        assert client.is_model_ready("trackflow")
        metadata = client.get_model_metadata("trackflow")
        assert [i["name"] for i in metadata["inputs"]] == list(INPUTS)
        assert [o["name"] for o in metadata["outputs"]] == ["track_id"]
        for event, want in zip(events, expected, strict=True):
            got = client.infer("trackflow", hit_inputs(event.hits)).as_numpy("track_id")
            np.testing.assert_array_equal(got, want)
        bad = events[0].hits.copy()
        bad.loc[bad.index[0], "z"] = np.inf
        with pytest.raises(InferenceServerException, match=r"input 'z': 1 value\(s\) are not finite"):
            client.infer("trackflow", hit_inputs(bad))
        wrong = hit_inputs(events[0].hits)[:-1]  # no module_id: Triton's own check
        with pytest.raises(InferenceServerException, match="module_id"):
            client.infer("trackflow", wrong)
        got = client.infer("trackflow", hit_inputs(events[1].hits)).as_numpy("track_id")
        np.testing.assert_array_equal(got, expected[1])
    finally:
        client.close()


@pytest.mark.slow
def test_custom_repository_answers_in_the_real_triton(
    environment: object, events: list, expected: list, tmp_path: Path
) -> None:
    models = export_triton(TritonExportConfig(tmp_path / "repo", kind="custom", instances=2))
    assert [p.name for p in models] == ["trackflow"]
    config = (tmp_path / "repo" / "trackflow" / "config.pbtxt").read_text()
    assert 'backend: "python"' in config
    assert "count: 2" in config
    with TritonServer(tmp_path / "repo", environment) as server:  # type: ignore[arg-type]
        check_repository(server, events, expected)


@pytest.mark.slow
def test_ensemble_repository_answers_in_the_real_triton(
    environment: object, events: list, expected: list, tmp_path: Path
) -> None:
    models = export_triton(TritonExportConfig(tmp_path / "repo", kind="ensemble", instances=1))
    stages = ["embedding", "filter", "gnn", "graph_building", "labelling"]
    assert [p.name for p in models] == ["trackflow"] + [f"trackflow_{s}" for s in stages]
    assert 'platform: "ensemble"' in (tmp_path / "repo" / "trackflow" / "config.pbtxt").read_text()
    with TritonServer(tmp_path / "repo", environment) as server:  # type: ignore[arg-type]
        check_repository(server, events, expected)


@pytest.mark.slow
def test_gpu_repository_runs_on_a_gpu_or_triton_says_there_is_none(
    environment: object, events: list, tmp_path: Path
) -> None:
    """``--device cuda``: KIND_GPU instances. With a GPU they answer with the pipeline's tracks on
    that GPU; without one, the real tritonserver refuses the model and the error says why (not
    only "failed to load all models")."""
    import torch

    export_triton(TritonExportConfig(tmp_path / "repo", kind="custom", device="cuda"))
    if torch.cuda.is_available():
        pipeline = trackflow.Pipeline.load(device="cuda")
        on_gpu = [np.asarray(pipeline(event).track_labels) for event in events]
        with TritonServer(tmp_path / "repo", environment) as server:  # type: ignore[arg-type]
            check_repository(server, events, on_gpu)
        return
    with pytest.raises(TritonStartError, match="has kind KIND_GPU but no GPUs are available") as error:
        TritonServer(tmp_path / "repo", environment).start()  # type: ignore[arg-type]
    assert str(error.value).endswith(".log)")  # the whole log is kept and named


def test_export_device_sets_the_instance_kind_and_each_instance_takes_its_gpu(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    result = CliRunner().invoke(
        main, ["export", "triton", str(out), "--kind", "ensemble", "--device", "cuda", "--instances", "2"]
    )
    assert result.exit_code == 0, result.output
    stage_configs = [p / "config.pbtxt" for p in out.iterdir() if p.name.startswith("trackflow_")]
    assert len(stage_configs) == 5
    for path in stage_configs:
        assert "instance_group [ { count: 2 kind: KIND_GPU } ]" in path.read_text()
    cpu = export_triton(TritonExportConfig(tmp_path / "cpu", kind="custom"))[0] / "config.pbtxt"
    assert "kind: KIND_CPU" in cpu.read_text()  # serve.triton.device's default
    assert instance_device({"model_instance_kind": "GPU", "model_instance_device_id": "1"}) == "cuda:1"
    assert instance_device({"model_instance_kind": "CPU", "model_instance_device_id": "0"}) == "cpu"
    with pytest.raises(ConfigError, match="choose one of cpu, cuda"):
        TritonExportConfig(out, device="gpu")


def test_export_checks_the_models_sha256(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(shipped_models_dir(), models)
    manifest = json.loads((models / "manifest.json").read_text())
    tampered = models / manifest["stages"]["gnn"]["file"]
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="sha256"):
        export_triton(TritonExportConfig(tmp_path / "repo", models_dir=models))
    assert not (tmp_path / "repo").exists()  # nothing half-written


def test_export_command_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "repo"
    result = runner.invoke(main, ["export", "triton", str(out), "--kind", "ensemble", "--instances", "3"])
    assert result.exit_code == 0, result.output
    assert "count: 3" in (out / "trackflow_gnn" / "config.pbtxt").read_text()
    assert (out / "trackflow" / "1" / "models" / "manifest.json").is_file()
    again = runner.invoke(main, ["export", "triton", str(out)])
    assert again.exit_code == 2
    assert "exists and is not empty (--overwrite replaces it)" in again.output
    assert runner.invoke(main, ["export", "triton", "--help"]).exit_code == 0
    with pytest.raises(ConfigError, match="choose one of custom, ensemble"):
        TritonExportConfig(out, kind="fused")


def test_a_missing_triton_environment_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        triton_environment(tmp_path / "no-python")
