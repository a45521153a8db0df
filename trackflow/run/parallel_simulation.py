"""Simulate many events and write them as TrackML files, in parallel on a Dask cluster.

One task per event: :func:`trackflow.events.simulation.simulate_event` then
:func:`trackflow.events.trackml.write_event`, both inside the worker, so only a small summary
travels back. Every event is seeded by ``(seed, event_index)``: one worker or many, the files are
the same.

A run writes into a hidden staging directory beside ``out_dir`` (same filesystem) and moves the
events in only once every one of them is written, so a failed or interrupted run leaves
``out_dir`` as it was: absent if it was absent, otherwise with its old events only. Several runs
may fill one directory with different ``first_event`` (several beam conditions side by side).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from trackflow.errors import ConfigError
from trackflow.events.detector import module_frames, resolve_detectors
from trackflow.events.simulation import SimulationConfig, simulate_event
from trackflow.events.trackml import list_events, write_event


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
    overwrite: bool = False,
) -> SimulationSummary:
    """Simulate ``events`` events (ids ``first_event`` ..) into ``out_dir`` as TrackML CSV(.gz).

    ``workers`` = 1 runs in this process; more runs one task per event on a Dask cluster
    (``cluster``: ``"local"`` = a LocalCluster of ``workers`` single-threaded processes, or any
    spec :func:`trackflow.cluster.open_cluster` takes). ``progress`` shows a tqdm bar over
    events. Returns the per-event counts and the wall time.

    Atomic: the events appear in ``out_dir`` only when all are written (see the module docstring).
    ``out_dir`` may already hold other events; one that already holds an id of this run is refused
    (ConfigError naming the directory and the ids) unless ``overwrite``, which replaces every file
    of those events.
    """
    if events < 1:
        raise ConfigError(f"events {events}: must be >= 1")
    if workers < 1:
        raise ConfigError(f"workers {workers}: must be >= 1")
    if first_event < 0:
        raise ConfigError(f"first_event {first_event}: must be >= 0")
    config.particle_files()  # a bad particles_from fails here, before any cluster starts
    # resolved (and derived, when it comes from ACTS) once here, not in every worker
    config = dataclasses.replace(config, detectors=resolve_detectors(config.detectors))
    module_frames(config.detectors)  # a missing or broken detector description fails here too
    out = Path(out_dir).resolve()  # workers may run elsewhere (Slurm): an absolute path
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {out}: is not a directory")
    indices = range(first_event, first_event + events)
    _check_free(out, indices, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    # hidden, beside out (a rename never crosses filesystems); mkdir, unlike mkdtemp, keeps the
    # umask's permissions, which out inherits when the staging directory becomes it
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.simulating"
    staging.mkdir()
    start = time.perf_counter()
    try:
        if workers == 1 and cluster == "local":
            results = _with_progress(
                (simulate_and_write(config, i, staging, compress) for i in indices), events, progress
            )
            done = list(results)
        else:
            done = _simulate_on_cluster(config, staging, indices, workers, progress, compress, cluster)
        done = _move_in(staging, out, sorted(done, key=lambda e: e.event_id), overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SimulationSummary(out_dir=out, events=done, seconds=time.perf_counter() - start, workers=workers)


def _check_free(out: Path, event_ids: Iterable[int], overwrite: bool) -> None:
    """Refuse to write events ``out`` already holds (any of their files), unless ``overwrite``."""
    if overwrite or not out.is_dir():
        return
    taken = sorted({ref.event_id for ref in list_events(out)} & set(event_ids))
    if taken:
        shown = ", ".join(map(str, taken[:10])) + (f" and {len(taken) - 10} more" if len(taken) > 10 else "")
        raise ConfigError(
            f"{out}: already holds event id(s) {shown}; choose other ids with --first-event, "
            "or replace them with --overwrite"
        )


def _move_in(staging: Path, out: Path, done: list[SimulatedEvent], overwrite: bool) -> list[SimulatedEvent]:
    """Move the finished events from ``staging`` into ``out``; returns them with their final paths.

    A new ``out`` is the staging directory renamed: one atomic step. Into an existing one (its
    permissions and inode kept), each file is renamed (atomic per file) once the ids are checked
    again (another run may have written meanwhile) and, with ``overwrite``, the old files of these
    events are removed, so no stale part (cells, or a .csv beside the new .csv.gz) stays behind.
    """

    def moved(event: SimulatedEvent) -> SimulatedEvent:
        return dataclasses.replace(event, paths={part: out / p.name for part, p in event.paths.items()})

    if not out.exists():
        try:
            staging.rename(out)
        except OSError:  # another run made out meanwhile and wrote into it: move file by file
            pass
        else:
            return [moved(event) for event in done]
    ids = {event.event_id for event in done}
    _check_free(out, ids, overwrite)
    if overwrite:
        for ref in list_events(out):
            if ref.event_id in ids:
                for path in ref.paths.values():
                    path.unlink(missing_ok=True)
    for path in sorted(staging.iterdir()):
        path.replace(out / path.name)
    return [moved(event) for event in done]


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

    from trackflow.cluster import open_cluster

    with open_cluster(cluster, workers, threads_per_worker=1) as handle:
        client = handle.client
        futures = [
            client.submit(simulate_and_write, config, i, out, compress, key=f"simulate-{i}", pure=False)
            for i in indices
        ]
        # results are small summaries; the events themselves never leave the workers
        return list(_with_progress((f.result() for f in as_completed(futures)), len(futures), progress))
