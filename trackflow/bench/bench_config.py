"""What ``trackflow bench`` sweeps (:class:`BenchConfig`): every default is a ``bench.*`` (or
``workflow.*``) setting of trackflow.yaml, read when the config is made."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trackflow import config
from trackflow.cluster.options import ClusterOptions, check_cluster
from trackflow.errors import ConfigError
from trackflow.run.batching import AUTO
from trackflow.run.executors import MODES
from trackflow.run.plugin import PipelineLoader

__all__ = ["BenchConfig"]


@dataclass
class BenchConfig:
    """What ``trackflow bench`` sweeps. Lists default to ``bench.*`` settings in trackflow.yaml.

    ``workers``: worker counts (model instances); ``threads``: threads per worker;
    ``concurrency``: batches in flight; ``modes``: among fused, staged, direct (direct runs once
    per thread count, in this process); ``batch_size``: events per batch, or ``"auto"`` (sized from
    the events' hits and balanced over each point's worker slots, as ``reconstruct`` cuts them;
    default ``workflow.batch_size``); ``repeats``: runs of each point; ``max_events``: use the first N
    events of ``input_dir``; ``hits``: first cut every bigger event down to this many random hits
    (a lower pile-up; written under ``out_dir``; default ``bench.hits`` = 10,000, 0 = as they
    are), so full 100k-hit events are benched in minutes — the size sweep still reaches their
    full size, and estimates extrapolate to it;
    ``size_sweep``: hit counts to subsample ``size_events`` events to for
    the size-scaling fit (empty: fit on the events as they are); ``loader``: builds the pipeline
    instead of ``Pipeline.load`` (tests, notebooks; picklable for the contention probe);
    ``cluster``: where the workers come from (:class:`~trackflow.cluster.ClusterOptions`; its
    ``workers`` and ``threads_per_worker`` are each sweep point's, from ``workers`` × ``threads``);
    ``min_point_s``: seconds of one-core work each timed point holds at least (default
    ``bench.min_point_s``, 5 s; 0: every event once): the events are replayed in order, whole
    times over, until their time per event (the first warm-up's median) adds up to it, then up to
    a multiple of the sweep's most worker slots, so that each slot runs whole copies — 16 small
    events are ~0.7 s of work, ~0.35 s on 2 workers, where one batch's ragged end and the
    machine's drift move a throughput by 10 %;
    ``scaling_rounds``: rounds in which the direct loop and fused on the scaling cluster (2 1-thread
    workers) take turns over the point's events, after that cluster's points (default
    ``bench.scaling_rounds``, 4; 0: the scaling efficiency from the sweep's points, minutes apart);
    ``contention``: measure the node contention (default ``bench.contention``, true; CPU only),
    each of its two runs lasting ``contention_seconds`` (default ``bench.contention_seconds``, 8 s).
    """

    input_dir: Path
    out_dir: Path
    workers: list[int] = field(default_factory=config.default("bench.workers"))
    threads: list[int] = field(default_factory=config.default("bench.threads"))
    concurrency: list[int] = field(default_factory=config.default("bench.concurrency"))
    modes: list[str] = field(default_factory=config.default("bench.modes"))
    batch_size: int | str = field(default_factory=config.default("workflow.batch_size"))
    repeats: int = field(default_factory=config.default("bench.repeats"))
    # a default sweep should take minutes on 2 cores, whatever the directory holds
    max_events: int | None = field(default_factory=config.default("bench.max_events"))
    min_point_s: float = field(default_factory=config.default("bench.min_point_s"))
    scaling_rounds: int = field(default_factory=config.default("bench.scaling_rounds"))
    hits: int | None = None
    size_sweep: list[int] = field(default_factory=config.default("bench.size_sweep"))
    size_events: int = field(default_factory=config.default("bench.size_events"))
    models_dir: Path | None = field(default_factory=config.default("models"))
    device: str = field(default_factory=config.default("device"))
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    loader: PipelineLoader | None = None
    plots: bool = True
    contention: bool = field(default_factory=config.default("bench.contention"))
    contention_seconds: float = field(default_factory=config.default("bench.contention_seconds"))

    def __post_init__(self) -> None:
        self.input_dir = Path(self.input_dir)
        self.out_dir = Path(self.out_dir)
        self.cluster = check_cluster(self.cluster)
        self.workers = _positive_list(self.workers, "bench.workers", "workers")
        self.threads = _positive_list(self.threads, "bench.threads", "threads")
        self.concurrency = _positive_list(self.concurrency, "bench.concurrency", "concurrency")
        self.modes = list(self.modes or config.get("bench.modes"))
        unknown = sorted(set(self.modes) - set(MODES))
        if unknown or not self.modes:
            raise ConfigError(f"modes: unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
        if self.batch_size != AUTO:
            try:
                self.batch_size = int(self.batch_size)
            except (TypeError, ValueError):
                problem = f"a number of events or 'auto', got {self.batch_size!r}"
                raise ConfigError(f"batch_size: {problem}") from None
            if self.batch_size < 1:
                raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")
        self.repeats = int(self.repeats)
        if self.repeats < 1:
            raise ConfigError(f"repeats: must be >= 1, got {self.repeats}")
        if self.hits is None:
            # full 100k-hit events take ~20 s each on one core: cut them for a sweep of minutes
            self.hits = config.get("bench.hits")
        if self.hits is not None and int(self.hits) <= 0:
            self.hits = None  # 0: bench the events as they are
        self.min_point_s = float(self.min_point_s)
        if not self.min_point_s >= 0:
            raise ConfigError(f"bench.min_point_s: must be >= 0 s, got {self.min_point_s}")
        self.scaling_rounds = int(self.scaling_rounds)
        if self.scaling_rounds < 0:
            raise ConfigError(f"bench.scaling_rounds: must be >= 0, got {self.scaling_rounds}")
        self.size_sweep = list(self.size_sweep)
        self.size_events = int(self.size_events)
        self.device = str(self.device)
        self.contention = bool(self.contention)
        self.contention_seconds = float(self.contention_seconds)
        if not self.contention_seconds > 0:
            raise ConfigError(f"bench.contention_seconds: must be > 0, got {self.contention_seconds}")
        if self.models_dir is not None:
            self.models_dir = Path(self.models_dir)


def _positive_list(values: Sequence[int] | None, key: str, option: str) -> list[int]:
    """``values`` (or the setting ``key``), sorted and unique; ConfigError naming ``option``."""
    chosen = list(values) if values else list(config.get(key))
    if not chosen or any(int(v) < 1 for v in chosen):
        raise ConfigError(f"{option}: need positive integers, got {chosen}")
    return sorted({int(v) for v in chosen})
