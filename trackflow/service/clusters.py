"""The clusters behind one :class:`~trackflow.service.Service` (issue 32): when one Dask scheduler
cannot drive the whole farm (``trackflow estimate`` says how many), the service spans K
independent clusters, each with its own scheduler and client, and sends each batch to the least
loaded one.

A cluster is *lost* when its client is no longer connected (``Client.status`` leaves
``running``: the scheduler went away, or the cluster was closed). Its batches in flight end
cancelled (``Client._reconnect`` / ``Client._close`` cancel every future); the service then sends
each of them to another cluster instead of answering it with a failure, and never picks the lost
cluster again (a cluster that comes back has a new scheduler without the service's plugin).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ServiceCluster", "is_cluster_loss", "least_loaded"]

#: the reason Dask gives the futures it cancels when its client loses the scheduler
CONNECTION_LOST = "scheduler-connection-lost"


@dataclass
class ServiceCluster:
    """One cluster of the service: its client, whether its workers offer a GPU, its worker
    threads (``slots``, refreshed by the service), its batches in flight, and why it was lost
    (None while usable)."""

    index: int
    client: Client
    gpu: bool = False
    slots: int = 1
    in_flight: int = 0
    lost: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        """``cluster N (scheduler address)``, for logs and failures."""
        address = getattr(getattr(self.client, "scheduler", None), "address", "?")
        return f"cluster {self.index} ({address})"

    def usable(self) -> bool:
        """Not lost, and its client still connected."""
        return self.lost is None and self.client.status == "running"

    def worker_slots(self) -> int:
        """Worker threads now connected to this cluster's scheduler (at least 1)."""
        return max(1, sum(self.workers().values()))

    def workers(self) -> dict[str, int]:
        """The workers now connected to this cluster's scheduler: address → threads."""
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return {str(address): int(w.get("nthreads", 1)) for address, w in info.items()}

    def connected_workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def take(self) -> None:
        with self._lock:
            self.in_flight += 1

    def give_back(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def mark_lost(self, reason: str) -> bool:
        """Record the loss; True the first time (the caller logs it once)."""
        with self._lock:
            first = self.lost is None
            if first:
                self.lost = reason
            return first


def least_loaded(
    clusters: Sequence[ServiceCluster], tasks_per_slot: int, exclude: Sequence[ServiceCluster] = ()
) -> ServiceCluster | None:
    """The usable cluster with the smallest share of its slots busy (fewest in flight, then the
    first, on a tie); None when every cluster is lost or excluded."""
    usable = [c for c in clusters if c.usable() and all(c is not e for e in exclude)]
    if not usable:
        return None
    return min(usable, key=lambda c: (c.in_flight / max(1, c.slots * tasks_per_slot), c.in_flight, c.index))


def is_cluster_loss(cluster: ServiceCluster, error: BaseException | None) -> bool:
    """Whether a batch that ended with ``error`` on ``cluster`` ended because the cluster went
    away (its client is no longer running, or Dask cancelled the future for a lost connection),
    not because of the batch itself."""
    if error is None:
        return False
    return cluster.lost is not None or cluster.client.status != "running" or CONNECTION_LOST in str(error)
