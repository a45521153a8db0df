"""Issue 29's inference steps, one at a time, side by side on the same full events.

Fourth round (``--round 4``): the models before (``--before``: the third round's, ``git archive
5e0ab51``) and ``--models``, in four steps: ``before``; ``+ z-window graph`` (graph building
searching barrel targets in azimuth and z at once: the same edges, so the same tracks);
``+ ReLU filter`` (the filter of ``--models``, a ReLU student without LayerNorm, at the
operating point before); ``+ GNN, operating point`` (``--models`` as they are). The triplet
search's sorted needles (the same pairs) are in every step.

Third round (``--round 3``, the default):

    git archive 7d51d8b trackflow/pipeline/models | tar -x -C /tmp/before  # the models before
    .venv/bin/python benchmarks/inference_steps.py --before /tmp/before/trackflow/pipeline/models
        [--models DIR] [--cells 55:0.15,5:0.3] [--repeats 2] [--work data/robustness]

Five pipelines, each one step further, with everything else equal, run in turn on each event
(the order alternating between repeats, one thread, best of ``--repeats``):

1. ``before``: the models before this round (``--before``: their filter, GNN weights, triplet
   cut and labelling cut), every MLP with ``torch.tanh``, the GNN computing the embedding again;
2. ``fast tanh``: :class:`trackflow.pipeline.mlp.Tanh` (2 sigmoid(2x) - 1 at CPU inference);
3. ``+ shared embedding``: the GNN takes the embedding stage's output;
4. ``+ distilled filter``: the filter of ``--models`` (default: the shipped ones), a student of
   the one before (``trackflow models distill-filter``), at the operating point before;
5. ``+ operating point``: ``--models`` as they are (their triplet chi2 and labelling cuts, from
   ``benchmarks/operating_point.py``).

Steps 1-3 must give identical tracks (the same functions up to float32 rounding); steps 4-5 are
scored. The GNN runs as eager Python in every step (rebuilt from the TorchScript with this
code's classes), so only the step differs. Per step: seconds per event by stage, the tracks'
efficiency (pT > 1, > 0.5 GeV), fake and duplicate rates and TrackML score, and whether the
labels equal step 1's. Events: the first of each full-density robustness cell (held-out
kinematics; ``benchmarks/robustness.py``'s cache, simulated if missing). Writes
benchmarks/results/inference_steps.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from pipeline_common import machine, write_table
from robustness import KAGGLE_DIR, Cell, cell_config, ensure_cell, held_out_dir
from torch import nn

from trackflow import metrics
from trackflow.events import list_events
from trackflow.pipeline import Pipeline, layer_map, model_files
from trackflow.pipeline.mlp import Tanh
from trackflow.pipeline.training.gnn import rebuild_embedded_gnn


def torch_tanh(module: nn.Module) -> None:
    """Every :class:`Tanh` inside ``module`` replaced by ``nn.Tanh`` (the code before this round)."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, Tanh):
                setattr(parent, name, nn.Tanh())


def step_pipelines(before_dir: Path, models_dir: Path) -> dict[str, Pipeline]:
    """The five pipelines of the module docstring."""
    steps: dict[str, Pipeline] = {}
    for name in ("before", "fast tanh", "+ shared embedding", "+ distilled filter"):
        pipeline = Pipeline.load(before_dir, threads=1)
        manifest = model_files.read_manifest(before_dir)
        embedding_kwargs = dict(manifest.stages["embedding"].model["kwargs"])
        gnn = pipeline.stages["gnn"]
        gnn.model = rebuild_embedded_gnn(gnn.model, embedding_kwargs)
        gnn.share_embedding = name not in ("before", "fast tanh")
        if name == "before":
            for stage in ("embedding", "filter", "gnn"):
                torch_tanh(pipeline.stages[stage].model)
        if name == "+ distilled filter":
            pipeline.stages["filter"].model = Pipeline.load(models_dir, threads=1).stages["filter"].model
        steps[name] = pipeline
    final = Pipeline.load(models_dir, threads=1)
    manifest = model_files.read_manifest(models_dir)
    final.stages["gnn"].model = rebuild_embedded_gnn(
        final.stages["gnn"].model, dict(manifest.stages["embedding"].model["kwargs"])
    )
    final.stages["gnn"].share_embedding = True
    steps["+ operating point"] = final
    return steps


def round4_pipelines(before_dir: Path, models_dir: Path) -> dict[str, tuple[Pipeline, bool]]:
    """The fourth round's steps (module docstring): pipeline and whether graph building may
    search in z windows."""
    relu_filter = Pipeline.load(before_dir, threads=1)
    relu_filter.stages["filter"].model = Pipeline.load(models_dir, threads=1).stages["filter"].model
    return {
        "before": (Pipeline.load(before_dir, threads=1), False),
        "+ z-window graph": (Pipeline.load(before_dir, threads=1), True),
        "+ ReLU filter": (relu_filter, True),
        "+ GNN, operating point": (Pipeline.load(models_dir, threads=1), True),
    }


def z_windows(allowed: bool) -> None:
    """Let graph building search barrel targets in z windows where they pay, or never."""
    layer_map.Z_WINDOW_MIN_CANDIDATES = DEFAULT_Z_WINDOW_MIN if allowed else 1 << 62


DEFAULT_Z_WINDOW_MIN = layer_map.Z_WINDOW_MIN_CANDIDATES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=None, help="final models (default: shipped)")
    parser.add_argument("--before", type=Path, required=True, help="the models before this round")
    parser.add_argument("--cells", default="55:0.15,5:0.3", help="full-density cells, SIGMA_Z:NOISE")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes of each step")
    parser.add_argument("--seed", type=int, default=2718, help="simulation seed (robustness.py's)")
    parser.add_argument("--work", type=Path, default=Path("data/robustness"), help="robustness cell cache")
    parser.add_argument("--round", type=int, choices=(3, 4), default=3, help="which round's steps")
    args = parser.parse_args()
    models_dir = args.models or model_files.shipped_models_dir()
    if args.round == 4:
        steps = round4_pipelines(args.before, models_dir)
    else:
        steps = {name: (pipeline, True) for name, pipeline in step_pipelines(args.before, models_dir).items()}
    particles = held_out_dir(args.work, KAGGLE_DIR)
    rows = []
    for spec in args.cells.split(","):
        sigma_z, noise = (float(v) for v in spec.split(":"))
        cell = Cell(sigma_z, 1.0, noise)
        directory, _ = ensure_cell(cell, cell_config(cell, args.seed, particles), args.work, 1)
        event = list_events(directory)[0].load()
        best: dict[str, float] = {}
        stage_times: dict[str, dict[str, float]] = {}
        labels: dict[str, np.ndarray] = {}
        quality: dict[str, metrics.TrackMetrics] = {}
        order = list(steps)
        for rep in range(args.repeats):
            for name in order if rep % 2 == 0 else order[::-1]:
                pipeline, z_window = steps[name]
                z_windows(z_window)
                start = time.perf_counter()
                with torch.inference_mode():
                    tracks = pipeline(event.hits_only())
                seconds = time.perf_counter() - start
                if seconds < best.get(name, float("inf")):
                    best[name], stage_times[name] = seconds, dict(tracks.timings)
                frame = tracks.to_frame()
                labels[name] = frame.track_id.to_numpy()
                quality[name] = metrics.score_event(
                    frame, event.truth, event.particles, event_id=event.event_id
                )
        first = order[0]
        for name in order:
            q, t = quality[name], stage_times[name]
            rows.append(
                [
                    f"σ_z {sigma_z:g}, noise {noise:g}",
                    name,
                    f"{best[name]:.2f}",
                    f"{best[name] / best[first]:.2f}",
                    " / ".join(f"{t[s]:.2f}" for s in ("embedding", "graph_building", "filter", "gnn")),
                    "yes" if np.array_equal(labels[name], labels[first]) else "no",
                    f"{100 * q.efficiency:.2f}",
                    f"{100 * q.efficiency_pt05:.2f}",
                    f"{100 * q.fake_rate:.2f}",
                    f"{100 * q.duplicate_rate:.2f}",
                    f"{q.trackml_score:.4f}",
                ]
            )
    write_table(
        "inference_steps" if args.round == 3 else "inference_steps_round4",
        "Issue 29's inference steps, side by side" + ("" if args.round == 3 else " (fourth round)"),
        [
            "event",
            "step",
            "s/event",
            "÷ step 1",
            "embedding / graph / filter / GNN s",
            "labels = step 1",
            "eff pT>1 %",
            "eff pT>0.5 %",
            "fake %",
            "dup %",
            "TrackML score",
        ],
        rows,
        f"Command: `python benchmarks/inference_steps.py --round {args.round} --before {args.before} "
        f"--cells {args.cells} "
        f"--repeats {args.repeats}` (models {models_dir}). Machine: {machine()}. One thread, best of "
        f"{args.repeats} alternating passes; the filter stage includes the triplet pruning.",
    )


if __name__ == "__main__":
    main()
