"""What an estimate reads from a bench.json: per-configuration service samples, the size model,
network, memory and contention figures, as numbers ready to compute with.

:class:`BenchInputs` is built from the typed record (:class:`~trackflow.estimation.bench_file.BenchFile`),
which checked the file's schema version and fields: nothing here guesses at a missing field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trackflow.estimation.bench_file import BenchFile, BenchFileError, read_bench
from trackflow.estimation.contention import NodeContention
from trackflow.estimation.size_model import MemoryScaling, SizeScaling

__all__ = ["BenchInputs", "ServiceProfile"]

#: modes whose per-event times are one server's: staged spreads one event over several tasks
SERVER_MODES = ("fused", "direct")


@dataclass
class ServiceProfile:
    """Measured per-event service of one worker configuration (device, threads).

    ``per_event_s``: in-task seconds per event, with the event's hits; ``overhead_per_task_s``:
    Dask's overhead per task (s, 0 for the direct loop); ``per_event_read_s``: of
    ``per_event_s``, the seconds reading the event's files (None: not measured).
    """

    key: str
    device: str
    threads: int
    workers: int
    per_event_s: np.ndarray
    per_event_hits: np.ndarray
    overhead_per_task_s: float = 0.0
    per_event_read_s: np.ndarray | None = None

    def scaled(self, scaling: SizeScaling, target_hits: float | None, reading: bool = True) -> np.ndarray:
        """Service samples (s) moved to ``target_hits`` (unchanged if None), plus task overhead;
        ``reading`` False leaves out the seconds the bench's tasks spent reading event files (a
        service is sent the hits in memory)."""
        samples = self.per_event_s
        if not reading and self.per_event_read_s is not None:
            samples = samples - self.per_event_read_s
        if target_hits is not None:
            samples = samples * scaling.ratio(target_hits, self.per_event_hits)
        return samples + self.overhead_per_task_s


@dataclass
class BenchInputs:
    """The measured inputs of an estimate, read from one bench.json (times s, sizes bytes)."""

    path: Path | None
    device: str
    profiles: list[ServiceProfile]
    scaling: SizeScaling
    input_hits: float  # mean hits of the events as given to the bench (the default target)
    round_trip_s: float
    transfer_bytes_per_s: float  # inf: not measured (the payload then adds no time)
    bytes_per_hit: float
    worker_rss_bytes: float
    worker_peak_bytes: float
    peak_hits: float
    machine: dict[str, Any] = field(default_factory=dict)
    working_memory: MemoryScaling | None = None  # bytes above resident while an event runs
    contention: NodeContention | None = None  # measured slowdown with all cores busy
    worker_side_cpu_s: float = 0.0  # Dask's CPU per task in a worker process, outside the task
    client_side_cpu_s: float = 0.0  # Dask's CPU per task in the client process (+ local scheduler)

    @classmethod
    def load(cls, path: str | Path) -> BenchInputs:
        """The inputs of the bench.json at ``path`` (:class:`BenchFileError` when unusable)."""
        path = Path(path)
        return cls.from_bench(read_bench(path), path)

    @classmethod
    def from_bench(cls, bench: BenchFile, path: Path | None = None) -> BenchInputs:
        """The inputs of a bench record; refused when it has no fused or direct service times."""
        overhead = bench.dask_overhead_per_batch_s or 0.0
        profiles = []
        for key, entry in bench.service_times.items():
            if entry.mode not in SERVER_MODES or not entry.per_event_s:
                continue
            per_event = np.asarray(entry.per_event_s, dtype=np.float64)
            read = entry.per_event_read_s
            profiles.append(
                ServiceProfile(
                    key=key,
                    device=entry.device,
                    threads=int(entry.threads),
                    workers=int(entry.workers),
                    per_event_s=per_event,
                    per_event_hits=np.asarray(entry.per_event_hits, dtype=np.float64),
                    overhead_per_task_s=float(overhead) if entry.mode == "fused" else 0.0,
                    # empty: not measured (one value per event when it is)
                    per_event_read_s=np.asarray(read, dtype=np.float64) if read else None,
                )
            )
        if not profiles:
            raise BenchFileError(path or "bench.json", "no fused or direct service times measured")
        network, memory, cpu = bench.network, bench.memory, bench.dask_cpu_per_batch_s
        return cls(
            path=path,
            device=bench.device,
            profiles=profiles,
            scaling=bench.size_scaling,
            # plan for the events as the user gave them (the bench may have cut them smaller)
            input_hits=float(bench.input_hits_per_event.mean),
            round_trip_s=float(network.round_trip_s.p50),
            transfer_bytes_per_s=float(network.transfer_bytes_per_s),
            bytes_per_hit=float(network.bytes_per_hit),
            worker_rss_bytes=float(memory.worker_rss_bytes),
            worker_peak_bytes=float(memory.worker_peak_bytes),
            peak_hits=float(memory.peak_hits),
            machine=dict(bench.machine),
            working_memory=memory.working_bytes_fit,
            contention=bench.node_contention,
            worker_side_cpu_s=float(cpu.worker_side) if cpu else 0.0,
            client_side_cpu_s=float(cpu.client_process) if cpu else 0.0,
        )

    def contention_factor(self, profile: ServiceProfile, busy_fraction: float) -> float:
        """Multiplier moving ``profile``'s times (measured with its workers × threads busy on the
        bench machine) to a node with ``busy_fraction`` of its cores busy; 1 when not measured."""
        if self.contention is None:
            return 1.0
        measured_busy = profile.workers * profile.threads if profile.device == "cpu" else 1
        return self.contention.at_fraction(busy_fraction) / self.contention.at(measured_busy)

    def profiles_for(self, device: str) -> list[ServiceProfile]:
        """One profile per thread count: fused preferred, then the most workers (most contention)."""
        best: dict[int, ServiceProfile] = {}
        for profile in self.profiles:
            if profile.device != device:
                continue
            current = best.get(profile.threads)
            if current is None or _rank(profile) > _rank(current):
                best[profile.threads] = profile
        return [best[t] for t in sorted(best)]

    def memory_per_worker(self, hits: float) -> float:
        """Bytes one worker needs for events of ``hits``: resident + the working memory of one
        event (the size sweep's fit when measured, else (peak − resident)·hits/peak_hits)."""
        if self.working_memory is not None:
            return self.worker_rss_bytes + float(self.working_memory.bytes(hits))
        extra = max(self.worker_peak_bytes - self.worker_rss_bytes, 0.0)
        return self.worker_rss_bytes + extra * hits / max(self.peak_hits, 1.0)

    def network_seconds(self, hits: float) -> float:
        """Network time added to each event's latency (s): round trip + payload/transfer rate."""
        return self.round_trip_s + self.bytes_per_hit * hits / self.transfer_bytes_per_s


def _rank(profile: ServiceProfile) -> tuple[bool, int]:
    """Fused (it carries Dask's overhead) before direct, then the most workers."""
    return (profile.overhead_per_task_s > 0 or "fused" in profile.key, profile.workers)
