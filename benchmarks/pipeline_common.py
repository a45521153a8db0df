"""Shared helpers of the pipeline benchmarks (frnn_backends, stage_scaling, stage_flops,
gpu_throughput): real events, the models to time, the machine's matmul peak, memory, tables."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trackflow.events import Event, list_events, read_event
from trackflow.pipeline import GraphBuildingConfig, HitGraph, Pipeline
from trackflow.pipeline.filter import FilterConfig
from trackflow.pipeline.model_files import MANIFEST_NAME, shipped_models_dir

REPO = Path(__file__).resolve().parents[1]

TRACKML_DIR = REPO.parent / "shared" / "data" / "trackml" / "kaggle_train_1"
RESULTS_DIR = REPO / "benchmarks" / "results"


def real_event(index: int = 0, directory: Path = TRACKML_DIR) -> Event:
    """One full real TrackML event (hits only, as a reconstruction job reads it)."""
    return read_event(list_events(directory)[index], parts=("hits",))


def subsample(event: Event, n_hits: int, seed: int = 0) -> Event:
    """``n_hits`` hits of ``event`` drawn at random (all of them if it has fewer)."""
    if n_hits >= event.n_hits:
        return event
    hits = event.hits.sample(n=n_hits, random_state=seed).sort_values("hit_id")
    return Event(event.event_id, hits.reset_index(drop=True))


def subsample_particles(event: Event, truth: pd.DataFrame, n_hits: int, seed: int = 0) -> Event:
    """About ``n_hits`` hits of ``event``: whole particles drawn at random (each keeps all its
    hits) plus the same fraction of its noise hits, as a lower-pileup event would look.
    ``truth``: hit_id, particle_id (0 = noise). Hits only in the result, as a job reads them."""
    if n_hits >= event.n_hits:
        return Event(event.event_id, event.hits.reset_index(drop=True))
    rng = np.random.default_rng(seed)
    particle = event.hits["hit_id"].map(truth.set_index("hit_id")["particle_id"]).fillna(0).to_numpy()
    fraction = n_hits / event.n_hits
    ids, counts = np.unique(particle[particle != 0], return_counts=True)
    order = rng.permutation(len(ids))
    n_signal = int(np.searchsorted(np.cumsum(counts[order]), fraction * counts.sum())) + 1
    keep = np.isin(particle, ids[order[:n_signal]])
    noise = np.nonzero(particle == 0)[0]
    keep[rng.choice(noise, size=round(fraction * len(noise)), replace=False)] = True
    return Event(event.event_id, event.hits[keep].reset_index(drop=True))


def benchmark_pipeline(
    models_dir: Path | None = None,
    device: str = "cpu",
    threads: int = 1,
    calibration_event: Event | None = None,
    edges_per_hit: float = 20.0,
    filter_keep: float = 0.2,
) -> tuple[Pipeline, str]:
    """The pipeline to time and a one-line description of it.

    Shipped (or ``models_dir``) models when there are some. Otherwise untrained models of the
    training's shapes (embedding/filter hidden 128, GNN hidden 64, 8 iterations) whose radius and
    filter cut are set on ``calibration_event`` so the graph has about ``edges_per_hit`` edges
    per hit and the filter keeps ``filter_keep`` of them, as trained models do; the times then
    stand for a trained pipeline's (the work per edge is the same), not its tracks.
    """
    directory = models_dir or shipped_models_dir()
    if (directory / MANIFEST_NAME).is_file():
        return Pipeline.load(directory, device=device, threads=threads), f"models: {directory}"
    pipeline = Pipeline.random_init(hidden=128, gnn_hidden=64, device=device, threads=threads)
    if calibration_event is None:
        calibration_event = real_event(0)
    radius, cut = calibrate(pipeline, [pipeline.prepare(calibration_event)], edges_per_hit, filter_keep)
    return pipeline, (
        f"untrained models (no shipped models yet), radius {radius:.4g} for ~{edges_per_hit:g} "
        f"edges/hit, filter cut {cut:.4g} keeping ~{filter_keep:.0%} (calibrated on "
        f"{calibration_event.n_hits} hits)"
    )


def calibrate(
    pipeline: Pipeline, graphs: Sequence[HitGraph], edges_per_hit: float, filter_keep: float
) -> tuple[float, float]:
    """Set the graph-building radius and the filter cut of an untrained ``pipeline`` so that
    ``graphs`` get about ``edges_per_hit`` edges per hit and the filter keeps ``filter_keep``
    of them (quantiles of distances between random pairs, and of filter scores)."""
    rng = np.random.default_rng(0)
    distances, n_hits, n_pairs = [], 0, 0.0
    embedded = [pipeline.run_stage("embedding", graph) for graph in graphs]
    for graph in embedded:
        emb = graph.embedding.detach().cpu().numpy().astype(np.float64)
        a, b = rng.integers(0, len(emb), (2, 100_000))
        keep = a != b
        distances.append(np.sqrt(((emb[a[keep]] - emb[b[keep]]) ** 2).sum(1)))
        n_hits += len(emb)
        n_pairs += len(emb) * (len(emb) - 1) / 2
    quantile = min(edges_per_hit * n_hits / n_pairs, 1.0)
    radius = float(np.quantile(np.concatenate(distances), quantile))
    pipeline.stages["graph_building"].config = GraphBuildingConfig(
        radius=radius, max_neighbours=pipeline.stages["graph_building"].config.max_neighbours
    )
    scores = []
    for graph in embedded:
        graph = pipeline.run_stage("graph_building", graph)
        scores.append(torch.sigmoid(pipeline.stages["filter"].logits(graph)).cpu().numpy())
    cut = float(np.clip(np.quantile(np.concatenate(scores), 1 - filter_keep), 0.0, 0.999))
    pipeline.stages["filter"].config = FilterConfig(cut=cut)
    return radius, cut


def matmul_peak_gflops(threads: int = 1, size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 matmul rate (GFLOP/s) of torch on this machine with ``threads`` threads."""
    torch.set_num_threads(threads)
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def best_time(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Minimum wall time (s) of ``repeats`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def rss_mib(field: str = "VmRSS") -> float:
    """VmRSS (now) or VmHWM (peak since start or the last reset) of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def machine() -> str:
    cpus = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()}: {cpus} CPUs, {gpu}, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}"


def write_table(
    name: str, title: str, header: Sequence[str], rows: Sequence[Sequence[object]], notes: str
) -> str:
    """Print a markdown table and write it to benchmarks/results/<name>.md; returns the text."""
    lines = [f"# {title}", "", notes.strip(), "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.md").write_text(text)
    return text
