"""trackflow: GNN-based charged-particle tracking (Exa.TrkX) as a Dask batch workflow.

The public API, imported lazily so that ``import trackflow`` stays light (no torch, no Dask
until a name that needs them is used)::

    import trackflow
    events = trackflow.list_events("events/")            # lazy: file names only
    event = trackflow.read_event(events[0])               # hits, truth, particles (validated)
    pipeline = trackflow.Pipeline.load()                  # the shipped models, CPU
    tracks = pipeline(event)                              # EventTracks: labels, timings, counts
    metrics = trackflow.score_event(tracks.to_frame(), event.truth, event.particles)
    with trackflow.open_cluster("local", workers=2, threads_per_worker=1) as cluster:
        config = trackflow.ReconstructConfig("events/", "out/", client=cluster.client)
        report = trackflow.reconstruct(config)             # report.json and submission.csv in out/

``__version__`` is the installed package's version (``pyproject.toml``, through its metadata).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("trackflow")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

#: public name -> module that owns it
_EXPORTS: dict[str, str] = {
    "Event": "trackflow.events",
    "EventRef": "trackflow.events",
    "list_events": "trackflow.events",
    "read_event": "trackflow.events",
    "write_event": "trackflow.events",
    "read_submission": "trackflow.events",
    "write_submission": "trackflow.events",
    "SimulationConfig": "trackflow.events.simulation",
    "simulate_event": "trackflow.events.simulation",
    "simulate": "trackflow.run.parallel_simulation",
    "score_event": "trackflow.metrics",
    "score_submission": "trackflow.metrics",
    "binned_efficiency": "trackflow.metrics",
    "Pipeline": "trackflow.pipeline",
    "EventTracks": "trackflow.pipeline",
    "TrainingConfig": "trackflow.pipeline.training",
    "train": "trackflow.pipeline.training",
    "open_cluster": "trackflow.cluster",
    "ClusterOptions": "trackflow.cluster",
    "ReconstructConfig": "trackflow.run.reconstruct",
    "reconstruct": "trackflow.run.reconstruct",
    "BenchConfig": "trackflow.bench.bench_config",
    "run_bench": "trackflow.bench.sweep",
    "write_plots": "trackflow.bench.plots",
    "estimate": "trackflow.estimation.sizing",
    "Service": "trackflow.service",
    "ServiceConfig": "trackflow.service",
    "StreamConfig": "trackflow.service.stream",
    "run_stream": "trackflow.service.stream",
}

__all__ = ["__version__", *sorted(_EXPORTS)]  # noqa: PLE0604 - names are str keys


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trackflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
