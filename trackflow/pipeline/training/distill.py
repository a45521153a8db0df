"""Distillation: a cheaper FilterNet or InteractionGNN trained to reproduce a trained one's logits.

Why: with the 0.5 GeV layer map a full event has ~2.8M candidate pairs and the 128-wide, 3-layer
filter's MLP is the largest cost of the pipeline. Trained from truth, a 64-wide filter lost 1-2 %
of the pT > 1 GeV truth edges the 128-wide one keeps (issue 29). Trained instead to reproduce the
128-wide filter's logit on every pair (regression, not classification), a 64-wide one keeps the
same edges to within a few per cent of the borderline ones, and its scores, which the GNN reads as
an input, follow the teacher's: the GNN runs on unchanged and needs no fine-tuning.

The teacher scores every graph-building pair of the given events once; the student then learns
from random batches of those pairs, a squared error on the logits clipped to +-``logit_clip``
(far from the cut the exact value does not matter), weighted up near the teacher's cut, where a
decision can flip, and on the pairs the teacher keeps. One event's pairs per step, in turn.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trackflow.errors import ConfigError
from trackflow.events import list_events
from trackflow.pipeline import model_files
from trackflow.pipeline.filter import FilterNet
from trackflow.pipeline.gnn import InteractionGNN
from trackflow.pipeline.mlp import ACTIVATIONS
from trackflow.pipeline.pipeline import Pipeline
from trackflow.pipeline.training.gnn import inner_gnn
from trackflow.pipeline.training.loop import Optimisation

log = logging.getLogger("trackflow.pipeline.training")


@dataclass
class DistillConfig:
    """Student shape and optimisation. ``hidden``, ``n_layers``: the student FilterNet's width and
    hidden layers (its inputs are the teacher's); ``steps`` of ``batch_size`` pairs at peak rate
    ``learning_rate`` (AdamW, warm-up then cosine); ``logit_clip``: teacher logits are clipped to
    +- this; ``near_cut_weight``: extra weight of pairs at the teacher's cut (a Gaussian of
    ``near_cut_width`` in logit around it); ``kept_weight``: extra weight of the pairs the teacher
    keeps; ``seed``: batches and initialisation; ``layer_norm``, ``activation``: the student's
    hidden blocks (LayerNorm + tanh as the teacher, or a cheaper plain ReLU network)."""

    hidden: int = 64
    n_layers: int = 3
    layer_norm: bool = True
    activation: str = "tanh"
    steps: int = 4000
    batch_size: int = 16384
    learning_rate: float = 3e-3
    logit_clip: float = 12.0
    near_cut_weight: float = 4.0
    near_cut_width: float = 2.0
    kept_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self, "distillation", ("hidden", "n_layers", "steps", "batch_size"))


def _check(config: DistillConfig | GNNDistillConfig, what: str, counts: tuple[str, ...]) -> None:
    """A distillation config's bounds, each failure a ConfigError naming ``what`` and the field."""
    for name in counts:
        if getattr(config, name) < 1:
            raise ConfigError(f"{what}: {name} must be >= 1, got {getattr(config, name)}")
    if not config.learning_rate > 0 or not config.logit_clip > 0 or not config.near_cut_width > 0:
        raise ConfigError(f"{what}: learning_rate, logit_clip and near_cut_width must be > 0")
    if config.activation not in ACTIVATIONS:
        raise ConfigError(
            f"{what}: activation must be one of {sorted(ACTIVATIONS)}, got {config.activation!r}"
        )


@dataclass
class TeacherPairs:
    """One event's graph-building pairs and the teacher's logits: hit ``features`` [N, F],
    ``embedding`` [N, D] or None, ``edges`` int64 [2, E], ``logits`` float32 [E] (clipped)."""

    features: torch.Tensor
    embedding: torch.Tensor | None
    edges: torch.Tensor
    logits: torch.Tensor


def teacher_pairs(pipeline: Pipeline, events_dirs: Sequence[Path], clip: float) -> list[TeacherPairs]:
    """Every event of ``events_dirs`` through embedding and graph building, and the pipeline's
    filter's logits over all the pairs (hits only are read: no truth is needed)."""
    stage = pipeline.stages["filter"]
    out = []
    for directory in events_dirs:
        for ref in list_events(directory):
            graph = pipeline.prepare(ref.load(("hits",)))
            for name in ("embedding", "graph_building"):
                graph = pipeline.run_stage(name, graph)
            if graph.edges is None or graph.n_edges == 0:
                continue
            logits = stage.logits(graph).clamp(-clip, clip)
            embedding = None if graph.embedding is None else graph.embedding.clone()
            out.append(TeacherPairs(graph.features.clone(), embedding, graph.edges.clone(), logits.clone()))
    if not out:
        names = ", ".join(map(str, events_dirs))
        raise ConfigError(f"distillation: no event with graph-building pairs in {names}")
    return out


def decision_weights(
    target: torch.Tensor, cut_logit: float, config: DistillConfig | GNNDistillConfig
) -> torch.Tensor:
    """Per-edge weights [E] of the squared logit error: 1, plus ``near_cut_weight`` times a
    Gaussian of ``near_cut_width`` (logit) around the cut, where a decision can flip, plus
    ``kept_weight`` on the edges the teacher keeps."""
    near = torch.exp(-(((target - cut_logit) / config.near_cut_width) ** 2) / 2.0)
    return 1.0 + config.near_cut_weight * near + config.kept_weight * (target > cut_logit).float()


def distill_filter(
    teacher_kwargs: dict[str, Any], cut: float, pairs: list[TeacherPairs], config: DistillConfig
) -> tuple[FilterNet, dict[str, Any], list[float]]:
    """The student FilterNet (eval mode), its constructor arguments and the loss of every step.
    ``teacher_kwargs``: the teacher's FilterNet arguments (the student reads the same inputs);
    ``cut``: the filter stage's cut (a probability) around which pairs weigh more."""
    torch.manual_seed(config.seed)
    kwargs = {
        **teacher_kwargs,
        "hidden": config.hidden,
        "n_layers": config.n_layers,
        "layer_norm": config.layer_norm,
        "activation": config.activation,
    }
    student = FilterNet(**kwargs)
    fit = Optimisation("filter distillation", student, config.learning_rate, config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    cut_logit = math.log(cut / (1.0 - cut))
    student.train()
    for step in range(config.steps):
        event = pairs[step % len(pairs)]
        index = torch.randint(0, event.edges.shape[1], (config.batch_size,), generator=generator)
        target = event.logits[index]
        weight = decision_weights(target, cut_logit, config)
        out = student(event.features, event.edges[:, index], event.embedding)
        fit.step((weight * (out - target) ** 2).mean())
        if (step + 1) % max(config.steps // 10, 1) == 0:
            log.info("filter distillation step %d/%d: loss %.4f", step + 1, config.steps, fit.losses[-1])
    return student.eval(), kwargs, fit.losses


def agreement(
    teacher: torch.nn.Module, student: torch.nn.Module, pairs: TeacherPairs, cut: float
) -> dict[str, float]:
    """How the student's keep decisions at ``cut`` compare with the teacher's on ``pairs``:
    the share of pairs whose decision flips and the share of the teacher's kept pairs lost."""
    with torch.inference_mode():
        logits_t = teacher(pairs.features, pairs.edges, pairs.embedding)
        logits_s = student(pairs.features, pairs.edges, pairs.embedding)
    kept_t, kept_s = torch.sigmoid(logits_t) > cut, torch.sigmoid(logits_s) > cut
    return {
        "flipped": float((kept_t ^ kept_s).float().mean()),
        "lost_of_kept": float((kept_t & ~kept_s).sum() / max(int(kept_t.sum()), 1)),
    }


def distill_models(
    models_dir: Path | None, events_dirs: Sequence[Path], out_dir: Path, config: DistillConfig
) -> Path:
    """A copy of ``models_dir`` (None: the shipped models) in ``out_dir`` whose filter is a
    student distilled on ``events_dirs``; every other stage, cut and setting unchanged. The
    manifest's training record gains a ``filter_distillation`` entry (config, teacher sha256,
    events, last loss). Returns ``out_dir``."""
    source = Path(models_dir) if models_dir is not None else model_files.shipped_models_dir()
    manifest = model_files.read_manifest(source)
    entry = manifest.stages.get("filter")
    if entry is None or entry.model is None or entry.model.get("class") != "FilterNet":
        raise ConfigError(f"{source}: distillation needs a FilterNet filter (state dict) to learn from")
    out_dir = Path(out_dir)
    if out_dir.resolve() == source.resolve():
        raise ConfigError(f"{out_dir}: the distilled models must go to another directory than {source}")
    pipeline = Pipeline.load(source)
    cut = float(pipeline.stages["filter"].config.cut)
    pairs = teacher_pairs(pipeline, events_dirs, config.logit_clip)
    log.info("distillation: %d events, %d pairs", len(pairs), sum(p.edges.shape[1] for p in pairs))
    student, kwargs, losses = distill_filter(dict(entry.model["kwargs"]), cut, pairs, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stage in manifest.stages.values():
        if stage.file and stage is not entry:
            shutil.copy2(source / stage.file, out_dir / stage.file)
    stages = dict(manifest.stages)
    stages["filter"] = model_files.save_model(student, out_dir, "filter", config=entry.config, kwargs=kwargs)
    training = {
        **manifest.training,
        "filter_distillation": {
            "config": asdict(config),
            "teacher_sha256": entry.sha256,
            "events": [str(d) for d in events_dirs],
            "final_loss": losses[-1] if losses else None,
        },
    }
    model_files.write_manifest(
        out_dir, stages, features=manifest.features, training=training, metrics=manifest.metrics
    )
    return out_dir


@dataclass
class GNNDistillConfig:
    """Student GNN shape and optimisation. ``hidden``, ``n_iterations``, ``n_mlp_layers``,
    ``layer_norm``, ``activation``: the student :class:`InteractionGNN` (its inputs, pair features
    and filter-score input are the teacher's); ``steps`` of one phi sector of about
    ``max_edges_per_step`` edges each (as GNN training: both ends inside), at peak rate
    ``learning_rate`` with gradients clipped to ``max_grad_norm``; ``epochs``: checkpoints (a
    killed run resumes after the last); the loss as :class:`DistillConfig`'s, around the GNN
    stage's cut, except that the student's logit is clipped too: beyond ``logit_clip`` on the
    teacher's side an edge costs nothing (labelling reads decisions near the cuts, and fitting
    the far tails took the capacity a student of this size needs near them)."""

    hidden: int = 32
    n_iterations: int = 6
    n_mlp_layers: int = 2
    layer_norm: bool = False
    activation: str = "relu"
    steps: int = 3000
    epochs: int = 10
    max_edges_per_step: int = 40000
    learning_rate: float = 3e-3
    max_grad_norm: float = 1.0
    logit_clip: float = 5.0
    near_cut_weight: float = 4.0
    near_cut_width: float = 2.0
    kept_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check(
            self,
            "GNN distillation",
            ("hidden", "n_iterations", "n_mlp_layers", "steps", "epochs", "max_edges_per_step"),
        )


@dataclass
class TeacherGraph:
    """One event's graph as the GNN stage sees it and the teacher GNN's logits: ``nodes`` [N, F+D]
    (hit features and embedding, the inputs of an EmbeddedGNN's InteractionGNN), ``phi`` [N] (rad),
    ``edges`` int64 [2, E], ``scores`` [E] (the filter's; [E, 5] with the triplet agreement when
    the teacher reads it), ``logits`` [E] (clipped)."""

    nodes: torch.Tensor
    phi: np.ndarray
    edges: np.ndarray
    scores: torch.Tensor
    logits: torch.Tensor


def teacher_graphs(pipeline: Pipeline, events_dirs: Sequence[Path], clip: float) -> list[TeacherGraph]:
    """Every event of ``events_dirs`` through the pipeline up to the GNN, and the GNN's logits
    (hits only are read). The pipeline's GNN must be an :class:`EmbeddedGNN`."""
    stage = pipeline.stages["gnn"]
    out = []
    for directory in events_dirs:
        for ref in list_events(directory):
            graph = pipeline.prepare(ref.load(("hits",)))
            for name in ("embedding", "graph_building", "filter"):
                graph = pipeline.run_stage(name, graph)
            if graph.edges is None or graph.n_edges == 0 or graph.edge_scores is None:
                continue
            if graph.embedding is None:
                raise ConfigError("GNN distillation: the pipeline has no embedding for the EmbeddedGNN")
            logits = stage.logits(graph).clamp(-clip, clip)
            nodes = torch.cat([graph.features, graph.embedding], dim=1)
            phi = torch.atan2(graph.features[:, 2], graph.features[:, 1]).numpy()
            # what the teacher read per edge: the filter's scores, and its triplet agreement if any
            inputs = stage.edge_inputs(graph)
            scores = graph.edge_scores if inputs is None else inputs
            out.append(
                TeacherGraph(nodes.clone(), phi, graph.edges.numpy().copy(), scores.clone(), logits.clone())
            )
    if not out:
        names = ", ".join(map(str, events_dirs))
        raise ConfigError(f"GNN distillation: no event with edges reaching the GNN in {names}")
    return out


def _sector(graph: TeacherGraph, max_edges: int, rng: np.random.Generator) -> TeacherGraph:
    """The edges with both hits in a random phi sector of about ``max_edges`` edges, on the
    sector's hits only (renumbered), as GNN training draws them."""
    n_edges = graph.edges.shape[1]
    if n_edges > max_edges:
        width = 2 * np.pi * max_edges / n_edges
        inside = np.mod(graph.phi - rng.uniform(-np.pi, np.pi), 2 * np.pi) < width
        keep = inside[graph.edges[0]] & inside[graph.edges[1]]
    else:
        keep = np.ones(n_edges, bool)
    edges = graph.edges[:, keep]
    hits, inverse = np.unique(edges.reshape(-1), return_inverse=True)
    index = torch.from_numpy(keep)
    return TeacherGraph(
        graph.nodes[torch.from_numpy(hits)],
        graph.phi[hits],
        inverse.reshape(2, -1),
        graph.scores[index],
        graph.logits[index],
    )


def student_kwargs(teacher: torch.nn.Module, in_features: int, config: GNNDistillConfig) -> dict[str, Any]:
    """The student :class:`InteractionGNN`'s constructor arguments: its shape from ``config``, its
    inputs (``in_features`` node columns, pair features, filter score) the teacher's."""
    inner = inner_gnn(teacher)
    return {
        "in_features": in_features,
        "hidden": config.hidden,
        "n_iterations": config.n_iterations,
        "n_mlp_layers": config.n_mlp_layers,
        "pair_features": bool(inner.pair_features),
        "r_scale": float(inner.r_scale),
        "z_scale": float(inner.z_scale),
        "edge_score_input": bool(inner.edge_score_input),
        "triplet_inputs": bool(getattr(inner, "triplet_inputs", False)),
        "layer_norm": config.layer_norm,
        "activation": config.activation,
    }


def distill_gnn(
    teacher: torch.nn.Module,
    cut: float,
    graphs: list[TeacherGraph],
    config: GNNDistillConfig,
    checkpoint: Path | None = None,
    init: torch.nn.Module | None = None,
) -> tuple[InteractionGNN, dict[str, Any], list[float]]:
    """The student :class:`InteractionGNN` (eval mode), its constructor arguments and the loss of
    every step. ``teacher``: the trained EmbeddedGNN (or InteractionGNN) whose inputs the student
    reads; ``cut``: the GNN stage's cut (a probability); ``init``: an earlier student of the same
    shape to go on from (its GNN's weights), else a fresh initialisation."""
    torch.manual_seed(config.seed)
    kwargs = student_kwargs(teacher, int(graphs[0].nodes.shape[1]), config)
    student = InteractionGNN(**kwargs)
    if init is not None:
        try:
            student.load_state_dict(inner_gnn(init).state_dict())
        except RuntimeError as error:
            raise ConfigError(
                f"GNN distillation: the starting student is not of the shape {kwargs}"
            ) from error
    steps_per_epoch = max(1, -(-config.steps // config.epochs))
    fit = Optimisation(
        "GNN distillation",
        student,
        config.learning_rate,
        steps_per_epoch * config.epochs,
        max_grad_norm=config.max_grad_norm,
        checkpoint=checkpoint,
        fingerprint=(asdict(config), [g.edges.shape[1] for g in graphs], float(cut), init is not None),
    )
    cut_logit = math.log(cut / (1.0 - cut))
    for epoch in range(fit.resume(), config.epochs):
        rng = np.random.default_rng([config.seed, epoch])  # a resumed run draws what it would have
        student.train()
        for step in range(steps_per_epoch):
            part = _sector(
                graphs[(epoch * steps_per_epoch + step) % len(graphs)], config.max_edges_per_step, rng
            )
            if part.edges.shape[1] == 0:
                continue
            edges = torch.from_numpy(part.edges)
            out = (
                student(part.nodes, edges, part.scores)
                if student.uses_edge_scores
                else student(part.nodes, edges)
            )
            weight = decision_weights(part.logits, cut_logit, config)
            clipped = out.clamp(-config.logit_clip, config.logit_clip)
            fit.step((weight * (clipped - part.logits) ** 2).mean())
        fit.end_epoch(epoch, config.epochs)
    return student.eval(), kwargs, fit.losses


def distill_gnn_models(
    models_dir: Path | None,
    events_dirs: Sequence[Path],
    out_dir: Path,
    config: GNNDistillConfig,
    student_from: Path | None = None,
) -> Path:
    """A copy of ``models_dir`` (None: the shipped models) in ``out_dir`` whose GNN is a student
    distilled on ``events_dirs`` (an EmbeddedGNN around the same embedding, TorchScript); every
    other stage, cut and setting unchanged. The manifest's training record gains a
    ``gnn_distillation`` entry. A checkpoint in ``out_dir`` lets a killed run resume.
    ``student_from``: a model directory whose (distilled) GNN the student goes on from."""
    from trackflow.pipeline.training.gnn import EmbeddedGNN

    source = Path(models_dir) if models_dir is not None else model_files.shipped_models_dir()
    manifest = model_files.read_manifest(source)
    entry = manifest.stages.get("gnn")
    out_dir = Path(out_dir)
    if out_dir.resolve() == source.resolve():
        raise ConfigError(f"{out_dir}: the distilled models must go to another directory than {source}")
    pipeline = Pipeline.load(source)
    teacher = pipeline.stages["gnn"].model
    embedding = pipeline.stages["embedding"].model if "embedding" in pipeline.stages else None
    if entry is None or not hasattr(teacher, "gnn") or embedding is None:
        raise ConfigError(f"{source}: GNN distillation needs an EmbeddedGNN and its embedding stage")
    cut = float(pipeline.stages["gnn"].config.cut)
    # scripted now, weights later: TorchScript reads the classes' source, which may have been
    # edited on disk by the time a long run ends
    in_features = int(inner_gnn(teacher).in_features)
    scripted = model_files.script(
        EmbeddedGNN(copy.deepcopy(embedding), InteractionGNN(**student_kwargs(teacher, in_features, config)))
    )
    graphs = teacher_graphs(pipeline, events_dirs, config.logit_clip)
    log.info("GNN distillation: %d events, %d edges", len(graphs), sum(g.edges.shape[1] for g in graphs))
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / ".gnn_distillation.ckpt"
    init = (
        None
        if student_from is None
        else model_files.load_model(model_files.read_manifest(student_from), "gnn")
    )
    student, kwargs, losses = distill_gnn(teacher, cut, graphs, config, checkpoint, init)
    for stage in manifest.stages.values():
        if stage.file and stage is not entry:
            shutil.copy2(source / stage.file, out_dir / stage.file)
    stages = dict(manifest.stages)
    scripted.load_state_dict(EmbeddedGNN(copy.deepcopy(embedding), student).state_dict())
    stages["gnn"] = model_files.save_model(
        scripted.eval(), out_dir, "gnn", kind="torchscript", config=entry.config
    )
    training = {
        **manifest.training,
        "gnn_distillation": {
            "config": asdict(config),
            "student": kwargs,
            "teacher_sha256": entry.sha256,
            "events": [str(d) for d in events_dirs],
            "student_from": None if student_from is None else str(student_from),
            "final_loss": float(np.mean(losses[-50:])) if losses else None,
        },
    }
    model_files.write_manifest(
        out_dir, stages, features=manifest.features, training=training, metrics=manifest.metrics
    )
    checkpoint.unlink(missing_ok=True)
    return out_dir
