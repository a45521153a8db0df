"""int8 dynamic quantisation of the MLP stages' Linear layers: time and physics, side by side.

    .venv/bin/python benchmarks/quantisation.py EVENTS_DIR [--events 1] [--repeats 3]

``torch.ao.quantization.quantize_dynamic`` turns every ``nn.Linear`` of the shipped filter into an
int8 one (weights int8 per tensor, activations quantised on the fly); LayerNorm, tanh, the gathers
and the pair features stay fp32. On each event (simulated, with truth) the graph is built once,
then the fp32 and the int8 filter score the same edges in turn, alternating which goes first,
``--repeats`` times on ONE thread (best time of each kept): the ratio is measured side by side.
Physics: edges whose keep decision at the filter cut flips, the largest logit change, and the
whole pipeline's track efficiency (pT > 1 and > 0.5 GeV) and fake rate with each filter.

The GNN is shipped as TorchScript (``EmbeddedGNN``) and reads its first Linear's weight matrix in
parts (node projections once per hit), so dynamic quantisation does not apply to it as it is.
Writes benchmarks/results/quantisation.md.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from pipeline_common import machine, write_table
from torch import nn

from trackflow import metrics
from trackflow.events import list_events
from trackflow.pipeline.pipeline import Pipeline


def filter_time(pipeline: Pipeline, graph: object, model: nn.Module) -> tuple[float, torch.Tensor]:
    """Seconds and logits of the filter stage's scoring with ``model`` in place."""
    stage = pipeline.stages["filter"]
    stage.model = model
    start = time.perf_counter()
    logits = stage.logits(graph)
    return time.perf_counter() - start, logits


def track_quality(pipeline: Pipeline, event: object, model: nn.Module) -> metrics.TrackMetrics:
    """The whole pipeline on ``event`` with ``model`` as its filter, scored against truth."""
    pipeline.stages["filter"].model = model
    tracks = pipeline(event.hits_only())
    return metrics.score_event(tracks.to_frame(), event.truth, event.particles, event_id=event.event_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events_dir", type=Path, help="simulated events with truth")
    parser.add_argument("--events", type=int, default=1, help="first N events of the directory")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each filter")
    args = parser.parse_args()

    pipeline = Pipeline.load(threads=1)
    fp32 = pipeline.stages["filter"].model
    int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fp32), {nn.Linear}, dtype=torch.qint8)
    filters = {"fp32": fp32, "int8": int8}
    cut = pipeline.stages["filter"].config.cut
    rows = []
    for ref in list_events(args.events_dir)[: args.events]:
        event = ref.load()
        graph = pipeline.prepare(event.hits_only())
        for name in ("embedding", "graph_building"):
            graph = pipeline.run_stage(name, graph)
        best = {"fp32": float("inf"), "int8": float("inf")}
        logits: dict[str, torch.Tensor] = {}
        for rep in range(args.repeats):
            order = list(filters.items())
            for tag, model in order if rep % 2 == 0 else order[::-1]:
                seconds, logits[tag] = filter_time(pipeline, graph, model)
                best[tag] = min(best[tag], seconds)
        keep_fp32 = torch.sigmoid(logits["fp32"]) > cut
        keep_int8 = torch.sigmoid(logits["int8"]) > cut
        quality = {tag: track_quality(pipeline, event, model) for tag, model in filters.items()}
        rows.append(
            [
                event.event_id,
                f"{graph.n_edges:,}",
                f"{best['fp32']:.2f}",
                f"{best['int8']:.2f}",
                f"{best['int8'] / best['fp32']:.2f}",
                f"{int(keep_fp32.sum()):,} / {int(keep_int8.sum()):,}",
                f"{int((keep_fp32 ^ keep_int8).sum()):,}",
                f"{float((logits['fp32'] - logits['int8']).abs().max()):.2f}",
                " / ".join(f"{100 * quality[t].efficiency:.1f}" for t in ("fp32", "int8")),
                " / ".join(f"{100 * quality[t].efficiency_pt05:.1f}" for t in ("fp32", "int8")),
                " / ".join(f"{100 * quality[t].fake_rate:.2f}" for t in ("fp32", "int8")),
            ]
        )
    pipeline.stages["filter"].model = fp32
    write_table(
        "quantisation",
        "int8 dynamic quantisation of the filter",
        [
            "event",
            "edges scored",
            "fp32 s",
            "int8 s",
            "int8 ÷ fp32",
            "kept fp32 / int8",
            "decisions flipped",
            "max abs Δ logit",
            "eff pT>1 % fp32 / int8",
            "eff pT>0.5 %",
            "fake %",
        ],
        rows,
        f"Command: `python benchmarks/quantisation.py {args.events_dir} --events {args.events} "
        f"--repeats {args.repeats}`. Machine: {machine()}. One thread, shipped models, best of "
        f"{args.repeats} alternating passes; the filter cut {cut:.4f}.",
    )


if __name__ == "__main__":
    main()
