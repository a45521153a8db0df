"""FRNN graph-building backends side by side, on embeddings of real TrackML hits.

    .venv/bin/python benchmarks/frnn_backends.py [--sizes 1000,10000,0] [--threads 1] [--device cpu]

Size 0 means the full event (~100k hits). For each size the embedding stage runs once, then each
backend (faiss IndexFlatL2 range search — the study's —, scipy cKDTree, torch blockwise) builds the
graph with the pipeline's radius and cap; the table gives the best of ``--repeats`` wall times,
the time relative to FAISS flat, and whether the edge set is identical to FAISS's (it must be).
Writes benchmarks/results/frnn_backends.md.
"""

from __future__ import annotations

import argparse

import torch
from pipeline_common import (
    benchmark_pipeline,
    best_time,
    machine,
    real_event,
    subsample,
    write_table,
)

from trackflow.pipeline import build_edges, set_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,0", help="hits per event; 0 = full event")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backends", default="faiss,kdtree,torch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (1 for the full event)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    event = real_event(0)
    pipeline, description = benchmark_pipeline(device=args.device, threads=args.threads)
    config = pipeline.stages["graph_building"].config
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        sample = subsample(event, size or event.n_hits)
        embedding = pipeline.run_stage("embedding", pipeline.prepare(sample)).embedding
        reference = None
        faiss_time = None
        for backend in args.backends.split(","):
            repeats = 1 if sample.n_hits > 50_000 else args.repeats
            seconds, edges = best_time(
                lambda b=backend, e=embedding: build_edges(e, config.radius, config.max_neighbours, b),
                repeats,
            )
            if reference is None:
                reference = edges
            if backend == "faiss":
                faiss_time = seconds
            identical = bool(torch.equal(edges.cpu(), reference.cpu()))
            rows.append(
                [
                    sample.n_hits,
                    backend,
                    f"{seconds:.4f}",
                    f"{seconds / faiss_time:.3f}" if faiss_time else "-",
                    edges.shape[1],
                    "yes" if identical else "**NO**",
                ]
            )
            print(rows[-1], flush=True)
    notes = (
        f"Machine: {machine()}; device {args.device}; {args.threads} thread(s). {description}. "
        f"Radius {config.radius:.4g}, cap {config.max_neighbours} per hit. Time: best of "
        f"{args.repeats} (1 for the full event), s. Command: `.venv/bin/python "
        f"benchmarks/frnn_backends.py --sizes {args.sizes} --threads {args.threads} "
        f"--device {args.device}`."
    )
    write_table(
        "frnn_backends",
        "FRNN backends (identical edge sets)",
        ["hits", "backend", "time (s)", "x FAISS flat", "edges", "same edges as first"],
        rows,
        notes,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
