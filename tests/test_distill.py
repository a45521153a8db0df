"""Distillation: a cheaper filter or GNN learns the shipped one's logits, and the written model
directory is the shipped one with only that stage replaced."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from trackflow.cli import main
from trackflow.errors import ConfigError
from trackflow.events import list_events
from trackflow.pipeline import model_files
from trackflow.pipeline.filter import FilterNet
from trackflow.pipeline.gnn import InteractionGNN
from trackflow.pipeline.pipeline import Pipeline
from trackflow.pipeline.training.distill import (
    DistillConfig,
    GNNDistillConfig,
    TeacherGraph,
    agreement,
    distill_filter,
    distill_gnn,
    distill_models,
    teacher_graphs,
    teacher_pairs,
)


def test_a_student_learns_the_teachers_decisions(tiny_events: Path) -> None:
    pipeline = Pipeline.load(threads=1)
    stage = pipeline.stages["filter"]
    shipped = model_files.read_manifest(model_files.shipped_models_dir())
    kwargs = dict(shipped.stages["filter"].model["kwargs"])
    pairs = teacher_pairs(pipeline, [tiny_events], clip=12.0)
    assert len(pairs) == 3 and all(p.edges.shape[1] > 100 for p in pairs)
    held_out, train_on = pairs[0], pairs[1:]
    # the cheap shape: ReLU, no LayerNorm
    config = DistillConfig(
        hidden=16, n_layers=2, layer_norm=False, activation="relu", steps=1600, batch_size=2048, seed=1
    )
    student, student_kwargs, losses = distill_filter(kwargs, stage.config.cut, train_on, config)
    assert isinstance(student, FilterNet) and not student.training
    assert student_kwargs == {
        **kwargs,
        "hidden": 16,
        "n_layers": 2,
        "layer_norm": False,
        "activation": "relu",
    }
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in student.modules())
    # it learns: the loss falls five-fold or more, and on an event it never saw it makes
    # the teacher's keep decisions far more often than an untrained network of its shape
    assert sum(losses[-20:]) < 0.2 * sum(losses[:20])
    torch.manual_seed(1)
    untrained = FilterNet(**student_kwargs).eval()
    learned = agreement(stage.model, student, held_out, stage.config.cut)
    before = agreement(stage.model, untrained, held_out, stage.config.cut)
    # (untrained, it keeps nothing: it flips every pair the teacher keeps, 15 % here)
    assert learned["flipped"] < 0.5 * before["flipped"]
    assert learned["lost_of_kept"] < 0.1


def test_distilled_models_replace_only_the_filter(tiny_events: Path, tmp_path: Path) -> None:
    out = tmp_path / "distilled"
    result = CliRunner().invoke(
        main,
        [
            *("models", "distill-filter", "--data", str(tiny_events), "--out", str(out)),
            *("--hidden", "8", "--layers", "1", "--steps", "20", "--batch-size", "512", "--threads", "1"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'manifest.json'}" in result.output
    shipped = model_files.read_manifest(model_files.shipped_models_dir())
    written = model_files.read_manifest(out)
    model_files.verify(written)  # every file's sha256 as the manifest says
    for name in ("embedding", "gnn"):
        assert written.stages[name].sha256 == shipped.stages[name].sha256
    assert written.stages["graph_building"].config == shipped.stages["graph_building"].config
    assert written.stages["filter"].config == shipped.stages["filter"].config  # cut, triplet pruning
    assert written.stages["filter"].model["kwargs"]["hidden"] == 8
    assert written.stages["filter"].sha256 != shipped.stages["filter"].sha256
    record = json.loads((out / "manifest.json").read_text())["training"]["filter_distillation"]
    assert record["teacher_sha256"] == shipped.stages["filter"].sha256 and record["config"]["steps"] == 20
    # the directory runs: every hit gets a label
    event = list_events(tiny_events)[0].load()
    tracks = Pipeline.load(out, threads=1)(event.hits_only())
    assert len(tracks.to_frame()) == event.n_hits
    # not over the teacher's own directory
    with pytest.raises(ConfigError, match="another directory"):
        distill_models(out, [tiny_events], out, DistillConfig(steps=1))


def _gnn_decisions(model: torch.nn.Module, graph: TeacherGraph, cut: float) -> torch.Tensor:
    with torch.inference_mode():
        logits = model(graph.nodes, torch.from_numpy(graph.edges), graph.scores)
    return torch.sigmoid(logits) > cut


def test_a_gnn_student_learns_the_teachers_decisions(tiny_events: Path, tmp_path: Path) -> None:
    pipeline = Pipeline.load(threads=1)
    teacher = pipeline.stages["gnn"].model
    cut = float(pipeline.stages["gnn"].config.cut)
    graphs = teacher_graphs(pipeline, [tiny_events], clip=12.0)
    assert len(graphs) == 3 and all(g.edges.shape[1] > 100 for g in graphs)
    held_out, train_on = graphs[0], graphs[1:]
    config = GNNDistillConfig(hidden=16, n_iterations=3, steps=300, epochs=2, max_edges_per_step=5000, seed=2)
    checkpoint = tmp_path / "gnn.ckpt"
    student, kwargs, losses = distill_gnn(teacher, cut, train_on, config, checkpoint)
    assert isinstance(student, InteractionGNN) and not student.training
    assert (kwargs["n_iterations"], kwargs["activation"], kwargs["layer_norm"]) == (3, "relu", False)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in student.modules())
    assert sum(losses[-20:]) < 0.3 * sum(losses[:20])
    # on an event it never saw it makes the teacher's decisions far more often than untrained
    kept = _gnn_decisions(teacher.gnn, held_out, cut)
    torch.manual_seed(2)
    untrained = InteractionGNN(**kwargs).eval()
    flipped = float((_gnn_decisions(student, held_out, cut) ^ kept).float().mean())
    flipped_before = float((_gnn_decisions(untrained, held_out, cut) ^ kept).float().mean())
    assert flipped < 0.5 * flipped_before
    # a run with the same config resumes from the checkpoint after its last epoch: nothing to redo
    again, _, losses_again = distill_gnn(teacher, cut, train_on, config, checkpoint)
    assert losses_again == losses
    for (name, a), b in zip(student.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_gnn_distilled_models_replace_only_the_gnn(
    tiny_events: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "distilled-gnn"
    # an earlier command may have raised it: the command itself must (a long run says what it does)
    logging.getLogger("trackflow.pipeline.training").setLevel(logging.WARNING)
    result = CliRunner().invoke(
        main,
        [
            *("models", "distill-gnn", "--data", str(tiny_events), "--out", str(out)),
            *("--hidden", "8", "--iterations", "2", "--steps", "10", "--max-edges", "2000", "--threads", "1"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert any("GNN distillation epoch" in r.getMessage() for r in caplog.records)
    shipped = model_files.read_manifest(model_files.shipped_models_dir())
    written = model_files.read_manifest(out)
    model_files.verify(written)
    for name in ("embedding", "filter"):
        assert written.stages[name].sha256 == shipped.stages[name].sha256
    assert written.stages["gnn"].config == shipped.stages["gnn"].config
    assert written.stages["gnn"].sha256 != shipped.stages["gnn"].sha256
    assert not (out / ".gnn_distillation.ckpt").exists()
    record = json.loads((out / "manifest.json").read_text())["training"]["gnn_distillation"]
    assert record["teacher_sha256"] == shipped.stages["gnn"].sha256 and record["student"]["n_iterations"] == 2
    # the directory runs, the student reading the embedding stage's output (same weights)
    pipeline = Pipeline.load(out, threads=1)
    assert pipeline.stages["gnn"].share_embedding
    assert int(pipeline.stages["gnn"].model.gnn.n_iterations) == 2
    event = list_events(tiny_events)[0].load()
    assert len(pipeline(event.hits_only()).to_frame()) == event.n_hits


def test_bad_distillation_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="distillation: steps must be >= 1"):
        DistillConfig(steps=0)
    with pytest.raises(ConfigError, match="GNN distillation: activation must be one of"):
        GNNDistillConfig(activation="gelu")
    with pytest.raises(ConfigError, match="GNN distillation: n_iterations must be >= 1"):
        GNNDistillConfig(n_iterations=0)
