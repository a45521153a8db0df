"""``bench.json``, typed: the record ``trackflow bench`` writes and the estimates read.

:class:`BenchFile` is the whole file; its nested records (:class:`ServiceTimes`,
:class:`NetworkFigures`, :class:`MemoryFigures`, ...) are its objects. ``trackflow bench``
(:mod:`trackflow.bench.sweep`) builds one and :meth:`BenchFile.write` s it;
:func:`read_bench` reads one back and checks it: a file of another schema version, or one that
lacks a field or has one this schema does not know, is refused with one line naming the file
and the problem (a :class:`BenchFileError`).

Units: times in s, sizes in bytes, rates in events/s (``transfer_bytes_per_s`` in bytes/s).
The free-form parts (``config``, ``machine``, each ``sweep`` entry, the headline figures'
``*_detail``) are what a person reads or a plot draws; the estimate reads only the typed ones.

``version`` is :data:`BENCH_SCHEMA_VERSION`. Version 1 (every bench before the schema was
typed) wrote the same keys with some missing in older files; it is refused rather than guessed
at: run ``trackflow bench`` again.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from trackflow.errors import ConfigError, PathError
from trackflow.estimation.contention import NodeContention
from trackflow.estimation.size_model import MemoryScaling, SizeScaling
from trackflow.files import write_json

__all__ = [
    "BENCH_SCHEMA_VERSION",
    "BenchFile",
    "BenchFileError",
    "DaskCpu",
    "HitsPerEvent",
    "MemoryFigures",
    "NetworkFigures",
    "RoundTrip",
    "ServiceTimes",
    "read_bench",
]

#: the schema :class:`BenchFile` writes and reads; bump on any change of a field
BENCH_SCHEMA_VERSION = 2

Record = TypeVar("Record")


class BenchFileError(PathError, ConfigError):
    """A bench.json that cannot be read: missing, not JSON, another schema version, a field
    missing or unknown. One line: ``"<path>: <problem>"``."""


@dataclass
class HitsPerEvent:
    """Hits per event over a set of events."""

    mean: float
    min: int
    max: int


@dataclass
class ServiceTimes:
    """Service-time samples of one (mode, workers, threads) configuration, keyed
    ``"mode/wW/tT"`` in :attr:`BenchFile.service_times`.

    Per event (in-task: read + pipeline, s): ``per_event_s`` with the event's hits, the seconds
    of it reading the event's files (``per_event_read_s``; empty: not measured) and the worker.
    Per batch: the task's seconds, its events, its worker, the client-observed latency, the
    overhead (latency − task time) and the batches in flight it ran with (``concurrency``).
    ``by_worker``, ``per_event`` and ``per_batch``: percentile summaries of the same samples
    (:func:`trackflow.percentiles.summary`)."""

    mode: str
    workers: int
    threads: int
    device: str
    per_event_s: list[float]
    per_event_hits: list[int]
    per_event_read_s: list[float]
    per_event_worker: list[str]
    per_batch_s: list[float]
    per_batch_events: list[int]
    per_batch_worker: list[str]
    per_batch_latency_s: list[float]
    per_batch_overhead_s: list[float]
    concurrency: list[int]
    by_worker: dict[str, dict[str, Any]]
    per_event: dict[str, float | None]
    per_batch: dict[str, float | None]


@dataclass
class DaskCpu:
    """CPU s Dask itself uses per batch outside the task, from the fused runs with the fewest
    workers (:func:`trackflow.bench.headline.dask_cpu_per_batch`)."""

    workers: int
    batches: int
    client_process: float  # client (+ scheduler and nannies of a local cluster)
    worker_side: float  # worker process CPU − in-task time
    what: str


@dataclass
class RoundTrip:
    """Scheduler → worker → scheduler round trips (s); all 0 when no Dask run."""

    p50: float
    mean: float
    min: float
    samples: int
    what: str


@dataclass
class NetworkFigures:
    """What the network adds per event. ``transfer_bytes_per_s`` is ``inf`` (``null`` in the
    file) when no transfer was measured (no Dask run): the payload then adds no time."""

    round_trip_s: RoundTrip
    client_scheduler_s: float | None
    transfer: dict[str, Any] | None  # the probe's own record (how, bytes, seconds, bytes_per_s)
    transfer_bytes_per_s: float
    input_bytes_per_event: float
    result_bytes_per_event: float | None
    bytes_per_event: float
    bytes_per_hit: float


@dataclass
class MemoryFigures:
    """Memory of one worker (bytes): resident after loading the models, peak resident after
    the sweep, the hits of the biggest event benched, and the working memory of one event
    against hits (the size sweep's fit; None without one)."""

    worker_rss_bytes: float
    worker_peak_bytes: float
    peak_hits: int
    working_bytes_fit: MemoryScaling | None
    what: str


@dataclass
class BenchFile:
    """The whole of bench.json (fields in the file's order; the definitions of the headline
    figures are in :mod:`trackflow.bench.sweep` and :mod:`trackflow.bench.headline`).

    ``size_scaling`` and ``size_measured`` are one object in the file (``size_scaling`` with
    the sweep's points under ``measured``).
    """

    created: str  # ISO 8601, UTC
    duration_s: float | None
    input_dir: str
    config: dict[str, Any]
    machine: dict[str, Any]
    device: str
    batch_size: int
    events: int
    hits_per_event: HitsPerEvent  # the events as benched (cut to ``bench.hits``)
    input_hits_per_event: HitsPerEvent  # the events as given: what an estimate plans for
    scaling_efficiency: float | None
    scaling_efficiency_detail: dict[str, Any]
    fused_over_staged: float | None
    fused_over_staged_by_workers: dict[str, float]
    dask_overhead_fraction: float | None
    dask_overhead_per_batch_s: float | None
    dask_overhead_detail: dict[str, Any]
    sweep: list[dict[str, Any]]
    service_times: dict[str, ServiceTimes]
    size_scaling: SizeScaling
    size_measured: list[dict[str, Any]]
    node_contention: NodeContention | None
    dask_cpu_per_batch_s: DaskCpu | None
    node_contention_error: str | None
    network: NetworkFigures
    memory: MemoryFigures
    plots: list[str]
    version: int = BENCH_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The file's content: plain JSON types, keys in the documented order."""
        out: dict[str, Any] = {"version": self.version}
        for f in fields(self):
            if f.name in ("version", "size_measured"):
                continue
            value = getattr(self, f.name)
            if f.name == "size_scaling":
                value = {**self.size_scaling.to_dict(), "measured": self.size_measured}
            out[f.name] = _plain(value)
        return out

    def write(self, path: Path) -> Path:
        """Write the file atomically (``inf`` and NaN become ``null``)."""
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, where: str = "bench.json") -> BenchFile:
        """The record of ``data`` (a parsed bench.json); :class:`BenchFileError` naming ``where``
        when its version is not :data:`BENCH_SCHEMA_VERSION` or a field is missing or unknown."""
        if not isinstance(data, dict):
            raise BenchFileError(where, "not a bench.json (the file is not a JSON object)")
        _check_version(data.get("version"), where)
        content = dict(data)
        scaling = content.get("size_scaling")
        if isinstance(scaling, dict):
            if "measured" not in scaling:
                raise BenchFileError(where, "not a bench.json of this schema: no 'size_scaling.measured'")
            scaling = dict(scaling)
            content["size_measured"] = scaling.pop("measured")
            content["size_scaling"] = scaling
        return _record(cls, content, where, "")


def read_bench(path: str | Path) -> BenchFile:
    """Read and check the bench.json at ``path`` (:meth:`BenchFile.from_dict`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchFileError(path, "no such file (run `trackflow bench` first)") from None
    except json.JSONDecodeError as error:
        raise BenchFileError(path, f"not JSON ({error.msg}, line {error.lineno})") from None
    return BenchFile.from_dict(data, str(path))


def _check_version(version: Any, where: str) -> None:
    if version == BENCH_SCHEMA_VERSION:
        return
    if not isinstance(version, int):
        raise BenchFileError(where, "not a bench.json of `trackflow bench` (no schema version)")
    if version < BENCH_SCHEMA_VERSION:
        raise BenchFileError(
            where,
            f"bench.json schema version {version}, older than this trackflow's "
            f"{BENCH_SCHEMA_VERSION}: run `trackflow bench` again",
        )
    raise BenchFileError(
        where,
        f"bench.json schema version {version}, newer than this trackflow's "
        f"{BENCH_SCHEMA_VERSION}: read it with the trackflow that wrote it",
    )


# --------------------------------------------------------------------------- conversion
def _plain(value: Any) -> Any:
    """A record as JSON types: records and the estimate's models through their own dicts."""
    if isinstance(value, SizeScaling | MemoryScaling | NodeContention):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _record(cls: type[Record], data: Any, where: str, at: str) -> Record:
    """``cls`` (a record dataclass) from its JSON object ``data``, checked field by field."""
    if not isinstance(data, dict):
        raise BenchFileError(where, f"{at or 'the file'} is not a JSON object")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    required = [f.name for f in fields(cls) if f.default is MISSING]  # type: ignore[arg-type]
    missing = [n for n in required if n not in data]
    unknown = sorted(set(data) - set(names))
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"no {', '.join(repr(_dotted(at, n)) for n in missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(repr(_dotted(at, n)) for n in unknown)}")
        raise BenchFileError(where, f"not a bench.json of this schema: {'; '.join(problems)}")
    values = {n: _typed(hints[n], data[n], where, _dotted(at, n)) for n in names if n in data}
    return cls(**values)


def _typed(hint: Any, value: Any, where: str, at: str) -> Any:
    """``value`` read as the field type ``hint``: records and models built, others as they are."""
    if value is None:
        if _optional(hint):
            return None
        if hint is float:
            return math.inf  # json_safe wrote inf as null; NaN is not a value bench.json holds
        raise BenchFileError(where, f"{at!r} is null")
    hint = _without_none(hint)
    if hint in (SizeScaling, MemoryScaling, NodeContention):
        try:
            return hint.from_dict(value)
        except (KeyError, TypeError, ValueError) as error:
            raise BenchFileError(where, f"{at!r} unreadable ({type(error).__name__}: {error})") from None
    if isinstance(hint, type) and is_dataclass(hint):
        return _record(hint, value, where, at)
    if typing.get_origin(hint) is dict:
        item = typing.get_args(hint)[1]
        if isinstance(item, type) and is_dataclass(item):
            if not isinstance(value, dict):
                raise BenchFileError(where, f"{at!r} is not a JSON object")
            return {k: _record(item, v, where, f"{at}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int | float):
        return float(value)
    return value


def _optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def _without_none(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _dotted(at: str, name: str) -> str:
    return f"{at}.{name}" if at else name
