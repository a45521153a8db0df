"""What an estimate answers, per node type, and how it is shown: :class:`NodeEstimate` (one node
type's needs), :class:`EstimateResult` (all of them, the inputs and the assumptions) with its
plain-text table and its files (``estimate.json``, ``nodes_vs_rate.png``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trackflow.estimation.node_types import NodeSpec
from trackflow.estimation.scheduler_plan import SchedulerPlan
from trackflow.files import write_json

__all__ = ["EstimateResult", "NodeEstimate", "format_bytes", "format_seconds"]


@dataclass
class NodeEstimate:
    """What one node type needs for the target rate (``None`` where not measured)."""

    node: NodeSpec
    measured: bool
    note: str = ""
    threads_per_worker: int | None = None
    servers: int | None = None  # workers (CPU) or GPUs
    workers_per_node: int | None = None
    nodes: int | None = None
    cores: int | None = None
    gpus: int | None = None
    memory_bytes: float | None = None
    network_bytes_per_s: float | None = None
    utilisation: float | None = None
    service_mean_s: float | None = None
    cost_core_s_per_event: float | None = None
    cost_gpu_s_per_event: float | None = None
    latency_s: dict[str, float] = field(default_factory=dict)
    mean_wait_allen_cunneen_s: float | None = None
    meets_budget: bool | None = None
    #: CPU-s/s of ONE Dask scheduler driving all the workers (1 = its core full), and the number
    #: of independent clusters (each its own scheduler) the farm is split into (SchedulerPlan)
    scheduler_utilisation: float | None = None
    clusters: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as estimate.json writes it (the node type as its own object)."""
        out = asdict(self)
        out["node"] = asdict(self.node)
        return out


@dataclass
class EstimateResult:
    """Every node type's needs at ``rate_hz``, the inputs used and the assumptions made."""

    rate_hz: float
    latency_budget_s: float | None
    event_hits: float
    headroom: float
    rows: list[NodeEstimate]
    assumptions: list[str]
    inputs: dict[str, Any]
    curve: dict[str, list[float]] = field(default_factory=dict)
    schedulers: list[SchedulerPlan] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """estimate.json's content."""
        return {
            "rate_hz": self.rate_hz,
            "latency_budget_s": self.latency_budget_s,
            "event_hits": self.event_hits,
            "headroom": self.headroom,
            "nodes": [row.to_dict() for row in self.rows],
            "assumptions": self.assumptions,
            "inputs": self.inputs,
            "nodes_against_rate": self.curve,
            "schedulers": [plan.to_dict() for plan in self.schedulers],
        }

    def table(self) -> str:
        """A plain-text table (one line per node type) followed by the assumptions."""
        header = (
            f"{'node':<8} {'nodes':>7} {'workers':>8} {'thr':>4} {'cores':>8} {'gpus':>6} "
            f"{'memory':>10} {'network':>11} {'util':>5} {'cost/evt':>12} "
            f"{'p50':>9} {'p95':>9} {'p99':>9} {'sched':>6} {'K':>3}"
        )
        lines = [
            f"target rate {self.rate_hz:g} Hz, events of {self.event_hits:,.0f} hits, "
            f"headroom {self.headroom:.0%}"
            + (
                f", latency budget {format_seconds(self.latency_budget_s)} (p95)"
                if self.latency_budget_s
                else ""
            ),
            header,
            "-" * len(header),
        ]
        for row in self.rows:
            if not row.measured:
                lines.append(f"{row.node.name:<8} not measured: {row.note}")
                continue
            cost = (
                f"{row.cost_gpu_s_per_event:.3g} GPU-s"
                if row.cost_gpu_s_per_event is not None
                else f"{row.cost_core_s_per_event:.3g} core-s"
            )
            lines.append(
                f"{row.node.name:<8} {row.nodes:>7,} {row.servers:>8,} {row.threads_per_worker:>4} "
                f"{row.cores or 0:>8,} {row.gpus or 0:>6,} {format_bytes(row.memory_bytes):>10} "
                f"{format_bytes(row.network_bytes_per_s) + '/s':>11} {row.utilisation:>5.0%} "
                f"{cost:>12} "
                + " ".join(f"{format_seconds(row.latency_s[q]):>9}" for q in ("p50", "p95", "p99"))
                + (
                    f" {row.scheduler_utilisation:>6.0%} {row.clusters:>3}"
                    if row.scheduler_utilisation is not None and row.clusters is not None
                    else ""
                )
            )
            if row.note:
                lines.append(f"{'':<8} note: {row.note}")
        for plan in self.schedulers:
            lines.append(f"scheduler: {plan.summary()}")
            lines.append(f"  {plan.node} against events per task (one scheduler's load, K, each one's load):")
            lines.extend(plan.sensitivity_lines())
        lines.append("assumptions:")
        lines.extend(f"  - {a}" for a in self.assumptions)
        return "\n".join(lines)

    def write(self, out_dir: Path) -> list[Path]:
        """``estimate.json`` and ``nodes_vs_rate.png`` in ``out_dir``; returns the paths."""
        from trackflow.estimation import plots

        out_dir = Path(out_dir)
        json_path = write_json(out_dir / "estimate.json", self.to_dict(), indent=2)  # atomic
        png = plots.plot_nodes_against_rate(self.curve, self.rate_hz, out_dir / "nodes_vs_rate.png")
        return [json_path, png]


def format_seconds(seconds: float | None) -> str:
    """``seconds`` (s) in the table's units: us, ms or s; ``inf`` when unbounded or unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "inf"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"


def format_bytes(n: float | None) -> str:
    """``n`` bytes in decimal units (kB, MB, GB, TB); ``-`` when unknown."""
    if n is None:
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}B"
