"""Simulate many events and write them as TrackML files, in parallel on a Dask cluster.

One task per event: :func:`trackflow.events.simulation.simulate_event` then
:func:`trackflow.events.trackml.write_event`, both inside the worker, so only a small summary
travels back. Every event is seeded by ``(seed, event_index)``: one worker or many, the files are
the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from trackflow.errors import ConfigError
from trackflow.events.simulation import SimulationConfig, simulate_event
from trackflow.events.trackml import write_event


@dataclass(frozen=True)
class SimulatedEvent:
    """What one simulated event came out as: counts, and the wall time it took (s)."""

    event_id: int
    hits: int
    particles: int
    noise_fraction: float
    seconds: float
    paths: dict[str, Path] = field(hash=False)


@dataclass
class SimulationSummary:
    """All events of one :func:`simulate` call, in event-id order, and the wall time (s)."""

    out_dir: Path
    events: list[SimulatedEvent]
    seconds: float
    workers: int

    def __len__(self) -> int:
        return len(self.events)

    @property
    def events_per_second(self) -> float:
        return len(self.events) / self.seconds if self.seconds > 0 else float("inf")

    @property
    def hits(self) -> int:
        return sum(e.hits for e in self.events)


def simulate_and_write(
    config: SimulationConfig, event_index: int, out_dir: Path, compress: bool = True
) -> SimulatedEvent:
    """Simulate event ``event_index`` (event id = index) and write its files into ``out_dir``."""
    start = time.perf_counter()
    event = simulate_event(config, event_index)
    paths = write_event(event, out_dir, compress=compress)
    return SimulatedEvent(
        event_id=event.event_id,
        hits=event.n_hits,
        particles=0 if event.particles is None else len(event.particles),
        noise_fraction=float(event.noise_fraction() or 0.0),
        seconds=time.perf_counter() - start,
        paths=paths,
    )


def simulate(
    config: SimulationConfig,
    out_dir: str | Path,
    events: int,
    workers: int = 1,
    progress: bool = True,
    first_event: int = 0,
    compress: bool = True,
    cluster: str = "local",
) -> SimulationSummary:
    """Simulate ``events`` events (ids ``first_event`` ..) into ``out_dir`` as TrackML CSV(.gz).

    ``workers`` = 1 runs in this process; more runs one task per event on a Dask cluster
    (``cluster``: ``"local"`` = a LocalCluster of ``workers`` single-threaded processes, or any
    spec :func:`trackflow.workflow.clusters.open_cluster` takes). ``progress`` shows a tqdm bar over
    events. Returns the per-event counts and the wall time.
    """
    if events < 1:
        raise ConfigError(f"--events {events}: must be >= 1")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1")
    if first_event < 0:
        raise ConfigError(f"--first-event {first_event}: must be >= 0")
    config.particle_files()  # a bad --particles-from fails here, before any cluster starts
    out = Path(out_dir).resolve()  # workers may run elsewhere (Slurm): an absolute path
    out.mkdir(parents=True, exist_ok=True)
    indices = range(first_event, first_event + events)
    start = time.perf_counter()
    if workers == 1 and cluster == "local":
        results = _with_progress(
            (simulate_and_write(config, i, out, compress) for i in indices), events, progress
        )
        done = list(results)
    else:
        done = _simulate_on_cluster(config, out, indices, workers, progress, compress, cluster)
    return SimulationSummary(
        out_dir=out,
        events=sorted(done, key=lambda e: e.event_id),
        seconds=time.perf_counter() - start,
        workers=workers,
    )


def _with_progress(results: Iterable[SimulatedEvent], total: int, progress: bool) -> Iterator[SimulatedEvent]:
    with tqdm(total=total, unit="event", desc="simulate", disable=not progress) as bar:
        for result in results:
            bar.update(1)
            bar.set_postfix(hits=result.hits)
            yield result


def _simulate_on_cluster(
    config: SimulationConfig,
    out: Path,
    indices: range,
    workers: int,
    progress: bool,
    compress: bool,
    cluster: str,
) -> list[SimulatedEvent]:
    from distributed import as_completed

    from trackflow.workflow.clusters import open_cluster

    with open_cluster(cluster, workers, threads_per_worker=1) as handle:
        client = handle.client
        futures = [
            client.submit(simulate_and_write, config, i, out, compress, key=f"simulate-{i}", pure=False)
            for i in indices
        ]
        # results are small summaries; the events themselves never leave the workers
        return list(_with_progress((f.result() for f in as_completed(futures)), len(futures), progress))
