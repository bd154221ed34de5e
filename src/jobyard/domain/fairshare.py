"""Fair share between tenants, after Slurm's fair-share factor.

Each tenant has a weight (its *shares*, default 1). Its *usage* is the slot-seconds
its jobs held, decayed exponentially with a half-life (a recent window): a slot held
``h`` half-lives ago counts half as much per half-life. Slurm's factor is

    F = 2 ** (-(U / U_all) / (S / S_all))

with ``U / U_all`` the tenant's part of all (decayed) usage and ``S / S_all`` its part
of all weights: 1.0 for a tenant that used nothing, 0.5 for one that used exactly its
share, towards 0 for one far over it. Between tenants that compete for slots, the
one with the highest factor gets the next slot; within a tenant, its queue order
(priority and aging) decides. Ordering by F is ordering by ``U / S`` (both parts are
divided by the same totals), so the claim compares ``usage / weight`` and needs no
totals. When usages are equal (at the start, or with no history) the tenant with
fewer running slots per weight goes first, so a burst of free slots is shared by
weight at once. Nothing is reserved: a tenant alone uses every free slot.

The usage of a tenant is kept as ``(usage, running, at)``: ``usage`` slot-seconds as
of time ``at`` while ``running`` slots were held since. Its value later is exact
without a scan of history (``running`` is constant between two changes, which
update the row):

    usage(t) = usage * d + running * (1 - d) / k,   d = exp(-k (t - at)),  k = ln 2 / half-life
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: the weight of a tenant that has none of its own
DEFAULT_WEIGHT = 1
#: the largest weight an admin may set
MAX_WEIGHT = 1_000_000
#: the decay rate used for a half-life of 0 (no history: only running slots count)
_NO_HISTORY_K = 1e6


def decay_rate(half_life_s: float) -> float:
    """``k`` of ``exp(-k t)`` for a half-life in seconds (0: no memory)."""
    if half_life_s <= 0:
        return _NO_HISTORY_K
    return math.log(2) / half_life_s


def usage_at(usage: float, running: float, elapsed_s: float, k: float) -> float:
    """The decayed usage ``elapsed_s`` seconds after a row holding ``usage`` while
    ``running`` slots were held all along (negative elapsed: the row is newer)."""
    if elapsed_s <= 0:
        return usage
    d = math.exp(-k * elapsed_s)
    return usage * d + running * (1.0 - d) / k


def factor(usage: float, total_usage: float, weight: float, total_weight: float) -> float:
    """Slurm's fair-share factor in (0, 1]: ``2 ** (-(usage/total) / (weight/total))``."""
    if total_usage <= 0 or usage <= 0:
        return 1.0
    share = weight / total_weight
    return float(2.0 ** (-(usage / total_usage) / share))


@dataclass
class Standing:
    """A tenant's fair-share state at one moment: decayed usage and running slots."""

    usage: float
    running: int
    weight: int = DEFAULT_WEIGHT

    def key(self) -> tuple[float, float]:
        """Lower goes first: usage per weight, then running slots per weight."""
        w = max(self.weight, 1)
        return (max(self.usage, 0.0) / w, max(self.running, 0) / w)


def shares(standings: Mapping[str, Standing]) -> dict[str, tuple[float, float, float]]:
    """Per tenant: (its part of the usage, its part of the weights, its factor)."""
    total_u = sum(max(s.usage, 0.0) for s in standings.values())
    total_w = sum(max(s.weight, 1) for s in standings.values()) or 1
    out: dict[str, tuple[float, float, float]] = {}
    for tenant, s in standings.items():
        u = max(s.usage, 0.0)
        w = max(s.weight, 1)
        part = u / total_u if total_u > 0 else 0.0
        out[tenant] = (part, w / total_w, factor(u, total_u, w, total_w))
    return out


def over_share(tenant: str, standings: Mapping[str, Standing]) -> bool:
    """Whether another tenant in ``standings`` goes before ``tenant`` (the tenants
    given are those that compete: they have queued jobs)."""
    mine = standings.get(tenant)
    if mine is None:
        return False
    return any(s.key() < mine.key() for t, s in standings.items() if t != tenant)
