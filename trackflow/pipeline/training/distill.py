"""Filter distillation: a narrower FilterNet trained to reproduce a trained filter's logits.

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

import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from trackflow.errors import ConfigError
from trackflow.events import list_events
from trackflow.pipeline import model_files
from trackflow.pipeline.filter import FilterNet
from trackflow.pipeline.pipeline import Pipeline
from trackflow.pipeline.training.loop import Optimisation

log = logging.getLogger("trackflow.pipeline.training")


@dataclass
class DistillConfig:
    """Student shape and optimisation. ``hidden``, ``n_layers``: the student FilterNet's width and
    hidden layers (its inputs are the teacher's); ``steps`` of ``batch_size`` pairs at peak rate
    ``learning_rate`` (AdamW, warm-up then cosine); ``logit_clip``: teacher logits are clipped to
    +- this; ``near_cut_weight``: extra weight of pairs at the teacher's cut (a Gaussian of
    ``near_cut_width`` in logit around it); ``kept_weight``: extra weight of the pairs the teacher
    keeps; ``seed``: batches and initialisation."""

    hidden: int = 64
    n_layers: int = 3
    steps: int = 4000
    batch_size: int = 16384
    learning_rate: float = 3e-3
    logit_clip: float = 12.0
    near_cut_weight: float = 4.0
    near_cut_width: float = 2.0
    kept_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layers", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"distillation: {name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not self.logit_clip > 0 or not self.near_cut_width > 0:
            raise ConfigError("distillation: learning_rate, logit_clip and near_cut_width must be > 0")


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


def distill_filter(
    teacher_kwargs: dict[str, Any], cut: float, pairs: list[TeacherPairs], config: DistillConfig
) -> tuple[FilterNet, dict[str, Any], list[float]]:
    """The student FilterNet (eval mode), its constructor arguments and the loss of every step.
    ``teacher_kwargs``: the teacher's FilterNet arguments (the student reads the same inputs);
    ``cut``: the filter stage's cut (a probability) around which pairs weigh more."""
    torch.manual_seed(config.seed)
    kwargs = {**teacher_kwargs, "hidden": config.hidden, "n_layers": config.n_layers}
    student = FilterNet(**kwargs)
    fit = Optimisation("filter distillation", student, config.learning_rate, config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    cut_logit = math.log(cut / (1.0 - cut))
    student.train()
    for step in range(config.steps):
        event = pairs[step % len(pairs)]
        index = torch.randint(0, event.edges.shape[1], (config.batch_size,), generator=generator)
        target = event.logits[index]
        weight = (
            1.0
            + config.near_cut_weight * torch.exp(-(((target - cut_logit) / config.near_cut_width) ** 2) / 2.0)
            + config.kept_weight * (target > cut_logit).float()
        )
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
