"""Queueing models for event reconstruction as a service: how long an event waits for a worker.

Vocabulary: events arrive at ``arrival_rate`` λ (events/s); a *server* is one worker slot (one
worker process with its threads, or one GPU); ``servers`` c of them serve the events first come,
first served; one event's *service time* S (s) is the in-task reconstruction time measured by
``trackflow bench``; *sojourn* (latency) = waiting in the queue + service.

Three models, all with independent, identically distributed service times:

* **M/M/c (Erlang C)**, exact for Poisson arrivals and exponential service:
  ``P(wait) = C(c, a)`` with offered load ``a = λ·E[S]``, mean wait ``Wq = C / (c/E[S] − λ)``,
  and ``P(Wq > t) = C·exp(−(c/E[S] − λ)·t)``. Used in tests (textbook values) and as a cross-check.
* **M/G/c, Allen–Cunneen approximation**: ``Wq ≈ Wq(M/M/c) · (ca² + cs²)/2`` with ``ca²`` the
  squared coefficient of variation of inter-arrival times (1 for Poisson) and ``cs²`` that of the
  service time. Quick and good for utilisation ≳ 0.5; used to size quickly over many rates.
* **Discrete-event simulation** (:func:`simulate_open_queue`, :func:`simulate_closed_queue`):
  service times are drawn with replacement from the measured samples (bootstrap), so the latency
  percentiles keep the real shape of the distribution (heavy tails of big events). The *open*
  system has Poisson arrivals (online processing: a trigger feeding events); the *closed* system
  keeps ``in_flight`` jobs in the system at all times, each finished job replaced at once — the
  batch workflow of ``trackflow reconstruct --max-in-flight K``. Latency percentiles reported by
  ``trackflow estimate`` come from the simulation.

Assumptions (stated in every estimate): servers are identical and do not slow each other down
beyond what the measured samples already contain; service times are independent of the queue
length; FCFS with a single shared queue (Dask's scheduler sends a task to an idle worker, which is
close to a shared queue when at most a few tasks are queued per worker); network time is added to
the latency outside the queue.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

#: above this many servers Erlang B comes from scipy's Poisson distribution, not the recursion
RECURSION_LIMIT = 10_000


def erlang_b(servers: int, offered_load: float) -> float:
    """Erlang B blocking probability for ``servers`` and offered load ``a = λ/μ`` (Erlangs).

    Up to :data:`RECURSION_LIMIT` servers with the stable recursion
    ``B(k) = a·B(k−1) / (k + a·B(k−1))``, ``B(0) = 1``; beyond (O(c) gets slow: a million-core
    estimate) from the Poisson form ``B = P(N = c) / P(N <= c)``, N ~ Poisson(a), in logs.
    """
    if servers < 0 or offered_load < 0:
        raise ValueError("servers and offered_load must be non-negative")
    if servers > RECURSION_LIMIT and offered_load > 0:
        from scipy.stats import poisson

        return float(np.exp(poisson.logpmf(servers, offered_load) - poisson.logcdf(servers, offered_load)))
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    return blocking


def erlang_c(servers: int, offered_load: float) -> float:
    """Erlang C: probability an arriving job has to wait in an M/M/c queue.

    ``offered_load`` a = λ·E[S] (Erlangs); needs a < c (a stable queue), else returns 1.0.
    """
    if servers < 1:
        raise ValueError("servers must be >= 1")
    if offered_load >= servers:
        return 1.0
    blocking = erlang_b(servers, offered_load)
    return servers * blocking / (servers - offered_load * (1.0 - blocking))


def mmc_mean_wait(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean waiting time in queue (s) of an M/M/c queue; ``inf`` when λ >= c·μ.

    ``arrival_rate`` λ (1/s), ``service_rate`` μ (1/s per server). For c = 1: ``ρ/(μ − λ)``.
    """
    capacity = servers * service_rate
    if arrival_rate >= capacity:
        return math.inf
    return erlang_c(servers, arrival_rate / service_rate) / (capacity - arrival_rate)


def mmc_mean_sojourn(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in system (s) of an M/M/c queue: wait + 1/μ. For c = 1: ``1/(μ − λ)``."""
    return mmc_mean_wait(arrival_rate, service_rate, servers) + 1.0 / service_rate


def mmc_wait_quantile(arrival_rate: float, service_rate: float, servers: int, q: float) -> float:
    """The ``q``-quantile (0 < q < 1) of the waiting time (s) in an M/M/c queue.

    From ``P(Wq > t) = C·exp(−(cμ − λ)t)``: zero when ``1 − q >= C``.
    """
    capacity = servers * service_rate
    if arrival_rate >= capacity:
        return math.inf
    wait_probability = erlang_c(servers, arrival_rate / service_rate)
    if 1.0 - q >= wait_probability:
        return 0.0
    return math.log(wait_probability / (1.0 - q)) / (capacity - arrival_rate)


def allen_cunneen_mean_wait(
    arrival_rate: float,
    mean_service_s: float,
    servers: int,
    service_cv2: float,
    arrival_cv2: float = 1.0,
) -> float:
    """Mean wait (s) in a G/G/c queue, Allen–Cunneen: ``Wq(M/M/c) · (ca² + cs²) / 2``.

    ``service_cv2`` = Var[S]/E[S]²; ``arrival_cv2`` = 1 for Poisson arrivals. Exact for M/M/c and
    for M/G/1 (Pollaczek–Khinchine).
    """
    wait_mmc = mmc_mean_wait(arrival_rate, 1.0 / mean_service_s, servers)
    return wait_mmc * (arrival_cv2 + service_cv2) / 2.0


@dataclass
class QueueSimulation:
    """Per-job times of one simulated queue (s) and the time-average number of jobs in system."""

    arrival_s: np.ndarray
    wait_s: np.ndarray
    service_s: np.ndarray
    servers: int
    mean_in_system: float
    duration_s: float

    @property
    def sojourn_s(self) -> np.ndarray:
        """Wait + service of each job (s)."""
        sojourn: np.ndarray = self.wait_s + self.service_s
        return sojourn

    @property
    def throughput(self) -> float:
        """Completed jobs per second over the measured window."""
        return len(self.arrival_s) / self.duration_s if self.duration_s > 0 else math.nan


def _simulated(
    arrivals: np.ndarray, starts: np.ndarray, services: np.ndarray, servers: int, warmup_fraction: float
) -> QueueSimulation:
    """The result of a simulated open queue (times in s), the first ``warmup_fraction`` of the
    jobs left out so the queue is measured in its steady state."""
    ends = starts + services
    first = int(len(arrivals) * warmup_fraction)
    t0, t1 = arrivals[first], arrivals[-1]
    return QueueSimulation(
        arrival_s=arrivals[first:],
        wait_s=(starts - arrivals)[first:],
        service_s=services[first:],
        servers=servers,
        mean_in_system=_time_average_in_system(arrivals, ends, t0, t1),
        duration_s=float(ends[first:].max() - t0),
    )


def _time_average_in_system(starts: np.ndarray, ends: np.ndarray, t0: float, t1: float) -> float:
    """∫ N(t) dt / (t1 − t0) for jobs present on [start, end), clipped to the window [t0, t1]."""
    clipped = np.clip(ends, t0, t1) - np.clip(starts, t0, t1)
    return float(clipped.sum() / (t1 - t0)) if t1 > t0 else math.nan


def simulate_open_queue(
    arrival_rate: float,
    service_samples: np.ndarray,
    servers: int,
    jobs: int = 20_000,
    warmup_fraction: float = 0.1,
    seed: int = 0,
) -> QueueSimulation:
    """FCFS c-server queue with Poisson arrivals at ``arrival_rate`` (1/s).

    Service times are drawn with replacement from ``service_samples`` (s). The first
    ``warmup_fraction`` of jobs is dropped so the statistics describe the steady state.
    """
    samples = np.asarray(service_samples, dtype=np.float64)
    if samples.size == 0 or servers < 1 or arrival_rate <= 0:
        raise ValueError("need service samples, servers >= 1 and a positive arrival rate")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / arrival_rate, size=jobs))
    services = rng.choice(samples, size=jobs, replace=True)
    # heap of the times each server becomes free; more servers than jobs are never all used
    free_at = [0.0] * min(servers, jobs)
    starts = np.empty(jobs)
    for i in range(jobs):
        earliest = heapq.heappop(free_at)
        starts[i] = max(arrivals[i], earliest)
        heapq.heappush(free_at, starts[i] + services[i])
    return _simulated(arrivals, starts, services, servers, warmup_fraction)


def simulate_closed_queue(
    in_flight: int,
    service_samples: np.ndarray,
    servers: int,
    jobs: int = 20_000,
    overhead_s: float = 0.0,
    warmup_fraction: float = 0.1,
    seed: int = 0,
) -> QueueSimulation:
    """A batch workflow: ``in_flight`` jobs always submitted, c servers, each end refills at once.

    ``overhead_s`` (s) is added to every job's sojourn outside the servers (submission and result
    round trip), during which the job holds an in-flight slot but no server. Sojourn counts from
    submission to result; throughput → ``min(c, K)/E[S]`` when overhead is small.
    """
    samples = np.asarray(service_samples, dtype=np.float64)
    if samples.size == 0 or servers < 1 or in_flight < 1:
        raise ValueError("need service samples, servers >= 1 and in_flight >= 1")
    rng = np.random.default_rng(seed)
    services = rng.choice(samples, size=jobs, replace=True)
    submitted = np.empty(jobs)
    starts = np.empty(jobs)
    # the K initial jobs are submitted at t=0; job i >= K is submitted when job i-K's result is back
    # (FCFS: results come back in start order only approximately, so track completions in a heap)
    done_heap: list[float] = []
    free_at = [0.0] * min(servers, jobs)
    for i in range(jobs):
        submitted[i] = 0.0 if i < in_flight else heapq.heappop(done_heap)
        ready = submitted[i] + overhead_s / 2  # half the round trip to reach a worker
        earliest = heapq.heappop(free_at)
        starts[i] = max(ready, earliest)
        end = starts[i] + services[i]
        heapq.heappush(free_at, end)
        heapq.heappush(done_heap, end + overhead_s / 2)
    returned = starts + services + overhead_s / 2
    first = int(jobs * warmup_fraction)
    t0 = float(returned[:first].max()) if first else 0.0
    t1 = float(returned.max())
    window = returned > t0
    # everything but the service itself counts as waiting: queue, and both halves of the round trip
    wait = starts - submitted + overhead_s / 2
    return QueueSimulation(
        arrival_s=submitted[window],
        wait_s=wait[window],
        service_s=services[window],
        servers=servers,
        mean_in_system=_time_average_in_system(submitted, returned, t0, t1),
        duration_s=t1 - t0,
    )


def simulate_contended_open_queue(
    arrival_rate: float,
    service_samples: np.ndarray,
    servers: int,
    busy_slowdown: float,
    jobs: int = 20_000,
    warmup_fraction: float = 0.1,
    seed: int = 0,
) -> QueueSimulation:
    """:func:`simulate_open_queue` for servers that slow each other down (shared cores).

    ``service_samples`` (s) were measured with all ``servers`` busy; ``busy_slowdown`` is their
    time ÷ the time of one server alone (the node contention, :mod:`trackflow.bench.contention`).
    A job that starts while ``k`` servers are busy (itself included) takes its drawn sample ×
    ``s(k)/s(c)``, with ``s`` linear from 1 (k = 1) to ``busy_slowdown`` (k = c). The slowdown is
    fixed when the job starts (servers that start or stop during it do not change it): exact at
    the extremes (one job at a time; all servers always busy), an approximation in between.
    """
    samples = np.asarray(service_samples, dtype=np.float64)
    if samples.size == 0 or servers < 1 or arrival_rate <= 0 or busy_slowdown <= 0:
        raise ValueError("need service samples, servers >= 1, a positive rate and slowdown")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / arrival_rate, size=jobs))
    alone = rng.choice(samples, size=jobs, replace=True) / busy_slowdown
    step = (busy_slowdown - 1.0) / (servers - 1) if servers > 1 else 0.0
    free_at = np.zeros(min(servers, jobs))
    starts = np.empty(jobs)
    services = np.empty(jobs)
    for i in range(jobs):
        server = int(np.argmin(free_at))
        starts[i] = max(arrivals[i], free_at[server])
        busy = 1 + int(np.count_nonzero(free_at > starts[i]))  # the others still running, and this one
        services[i] = alone[i] * (1.0 + step * (busy - 1))
        free_at[server] = starts[i] + services[i]
    return _simulated(arrivals, starts, services, servers, warmup_fraction)
