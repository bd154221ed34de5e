"""Priorities and the queue order with aging.

A queued job's place in the queue is its *sort key*: the time it became
eligible minus a head start that grows with its priority. Jobs run in
ascending sort key, so a higher priority wins among jobs of similar age, while a
job that has waited longer than the head-start gap wins over newer jobs of any
priority: low priority never starves. The key is fixed when the job is queued,
so one index serves the queue order.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from jobyard.clock import to_epoch


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


def sort_key(eligible_at: datetime, priority: Priority, aging_step_s: float) -> float:
    """Queue sort key: eligible time (epoch seconds) minus ``rank * aging_step_s``."""
    return to_epoch(eligible_at) - priority.rank * aging_step_s
