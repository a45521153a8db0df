"""Queueing math against answers known independently (closed forms, textbook tables, Little's law)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trackflow.estimation import queueing


def erlang_c_closed_form(c: int, a: float) -> float:
    """Erlang C from its defining sum (independent of the recursion under test)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def test_mm1_sojourn_is_one_over_mu_minus_lambda() -> None:
    lam, mu = 3.0, 5.0
    assert queueing.mmc_mean_sojourn(lam, mu, 1) == pytest.approx(1.0 / (mu - lam))
    assert queueing.mmc_mean_wait(lam, mu, 1) == pytest.approx(lam / mu / (mu - lam))
    # an M/M/1 arrival waits with probability rho
    assert queueing.erlang_c(1, lam / mu) == pytest.approx(lam / mu)


@pytest.mark.parametrize(
    ("servers", "load", "table_value"),
    [
        # textbook (e.g. Kleinrock / call-centre tables): C(3, 2 Erlang) = 4/9
        (3, 2.0, 4.0 / 9.0),
        # C(2, 1 Erlang) = 1/3
        (2, 1.0, 1.0 / 3.0),
        # C(10, 8 Erlang) = 0.409 (Erlang C tables)
        (10, 8.0, 0.4092),
    ],
)
def test_erlang_c_matches_tables(servers: int, load: float, table_value: float) -> None:
    assert queueing.erlang_c(servers, load) == pytest.approx(table_value, abs=5e-4)
    assert queueing.erlang_c(servers, load) == pytest.approx(erlang_c_closed_form(servers, load))


def test_erlang_c_unstable_and_large() -> None:
    assert queueing.erlang_c(4, 4.0) == 1.0
    # the recursion stays finite where factorials overflow floats
    value = queueing.erlang_c(2000, 1900.0)
    assert 0.0 < value < 1.0


def test_mmc_wait_quantile_inverts_tail() -> None:
    lam, mu, c = 8.0, 1.0, 10
    q95 = queueing.mmc_wait_quantile(lam, mu, c, 0.95)
    tail = queueing.erlang_c(c, lam / mu) * math.exp(-(c * mu - lam) * q95)
    assert tail == pytest.approx(0.05)
    # most arrivals do not wait at light load: the median wait is zero
    assert queueing.mmc_wait_quantile(1.0, 1.0, 10, 0.5) == 0.0


def test_allen_cunneen_reduces_to_pollaczek_khinchine_for_md1() -> None:
    lam, service = 0.7, 1.0
    rho = lam * service
    pk = rho * service / (2 * (1 - rho))  # M/D/1 mean wait
    assert queueing.allen_cunneen_mean_wait(lam, service, 1, service_cv2=0.0) == pytest.approx(pk)


def test_simulated_mmc_matches_erlang_c_and_littles_law() -> None:
    lam, mu, c = 3.2, 1.0, 4
    rng = np.random.default_rng(1)
    samples = rng.exponential(1.0 / mu, size=200_000)
    sim = queueing.simulate_open_queue(lam, samples, c, jobs=100_000, seed=2)
    expected_wait = queueing.mmc_mean_wait(lam, mu, c)
    assert sim.wait_s.mean() == pytest.approx(expected_wait, rel=0.1)
    # Little's law: time-average number in system = arrival rate × mean time in system
    assert sim.mean_in_system == pytest.approx(lam * sim.sojourn_s.mean(), rel=0.03)


def test_simulated_md1_matches_pollaczek_khinchine() -> None:
    lam = 0.6
    sim = queueing.simulate_open_queue(lam, np.array([1.0]), 1, jobs=100_000, seed=3)
    assert sim.wait_s.mean() == pytest.approx(lam / (2 * (1 - lam)), rel=0.08)


def test_closed_queue_throughput_limits() -> None:
    service = np.array([0.5])
    # fewer jobs in flight than servers: each job runs at once, throughput = K / S
    few = queueing.simulate_closed_queue(2, service, servers=4, jobs=2_000)
    assert few.throughput == pytest.approx(2 / 0.5, rel=0.01)
    assert np.allclose(few.sojourn_s, 0.5)
    # more in flight than servers: throughput saturates at c / S and Little's law gives latency
    many = queueing.simulate_closed_queue(6, service, servers=2, jobs=2_000)
    assert many.throughput == pytest.approx(2 / 0.5, rel=0.01)
    assert many.sojourn_s.mean() == pytest.approx(6 / many.throughput, rel=0.02)


def test_closed_queue_overhead_adds_to_latency() -> None:
    sim = queueing.simulate_closed_queue(1, np.array([1.0]), 1, jobs=500, overhead_s=0.2)
    assert np.allclose(sim.sojourn_s, 1.2)
    assert sim.throughput == pytest.approx(1 / 1.2, rel=0.01)


def test_simulation_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="service samples"):
        queueing.simulate_open_queue(1.0, np.array([]), 1)


def test_erlang_b_poisson_form_agrees_with_recursion() -> None:
    recursion = queueing.erlang_b(9_000, 8_900.0)
    limit = queueing.RECURSION_LIMIT
    try:
        queueing.RECURSION_LIMIT = 10
        assert queueing.erlang_b(9_000, 8_900.0) == pytest.approx(recursion, rel=1e-6)
    finally:
        queueing.RECURSION_LIMIT = limit
    # huge systems stay quick and sane: a stable queue at 80 % load rarely waits
    assert 0.0 <= queueing.erlang_c(500_000_000, 4e8) < 1e-6
