"""The pure fair-share functions (domain/fairshare.py): Slurm's factor, the exact decay
of usage kept as (usage, running, at), and which tenant goes first."""

from __future__ import annotations

import math

import pytest

from jobyard.domain import fairshare
from jobyard.domain.fairshare import Standing


def test_factor_is_slurms() -> None:
    # nothing used: 1; exactly its share: 0.5; twice its share: 0.25
    assert fairshare.factor(0.0, 100.0, 1, 4) == 1.0
    assert fairshare.factor(25.0, 100.0, 1, 4) == pytest.approx(0.5)
    assert fairshare.factor(50.0, 100.0, 1, 4) == pytest.approx(0.25)
    assert fairshare.factor(10.0, 100.0, 3, 4) == pytest.approx(2 ** (-0.1 / 0.75))
    assert fairshare.factor(5.0, 0.0, 1, 1) == 1.0  # no usage at all yet


def test_usage_decays_by_half_per_half_life_and_accrues_the_running_slots() -> None:
    k = fairshare.decay_rate(600.0)
    assert fairshare.usage_at(100.0, 0, 600.0, k) == pytest.approx(50.0)
    assert fairshare.usage_at(100.0, 0, 1200.0, k) == pytest.approx(25.0)
    assert fairshare.usage_at(100.0, 3, 0.0, k) == 100.0
    assert fairshare.usage_at(100.0, 3, -5.0, k) == 100.0  # a newer row is left alone
    # two slots for 10 s with hardly any decay: about 20 slot-seconds
    assert fairshare.usage_at(0.0, 2, 10.0, k) == pytest.approx(20.0, rel=0.01)
    # the closed form equals the decayed integral, summed in small steps
    u, dt = 7.0, 0.01
    for _ in range(int(300 / dt)):
        u = u * math.exp(-k * dt) + 4 * dt
    assert fairshare.usage_at(7.0, 4, 300.0, k) == pytest.approx(u, rel=1e-3)
    # applying it in two pieces gives the same as in one (rows may be updated any time)
    once = fairshare.usage_at(5.0, 2, 90.0, k)
    twice = fairshare.usage_at(fairshare.usage_at(5.0, 2, 40.0, k), 2, 50.0, k)
    assert twice == pytest.approx(once)


def test_a_half_life_of_zero_counts_only_the_running_slots() -> None:
    k = fairshare.decay_rate(0.0)
    assert fairshare.usage_at(1000.0, 5, 1.0, k) == pytest.approx(0.0, abs=1e-3)


def test_the_tenant_furthest_under_its_weight_goes_first() -> None:
    a = Standing(usage=300.0, running=3, weight=3)
    b = Standing(usage=150.0, running=1, weight=1)
    assert a.key() < b.key()  # 100 per weight against 150
    assert fairshare.over_share("b", {"a": a, "b": b})
    assert not fairshare.over_share("a", {"a": a, "b": b})
    # equal usage per weight (at the start: none): fewer running slots per weight first
    assert Standing(0.0, 2, 3).key() < Standing(0.0, 1, 1).key()
    # a tenant alone is never over its share
    assert not fairshare.over_share("b", {"b": b})
    parts = fairshare.shares({"a": a, "b": b})
    assert parts["a"][:2] == pytest.approx((2 / 3, 3 / 4))
    assert parts["b"][:2] == pytest.approx((1 / 3, 1 / 4))
    assert parts["a"][2] > 0.5 > parts["b"][2]
