"""How the service layer tells the node's dispatcher that something happened."""

from __future__ import annotations

from typing import Protocol


class Wakeup(Protocol):
    def job_queued(self) -> None:
        """A job became runnable: look at the queue now."""

    def cancel_requested(self, job_id: str) -> None:
        """A job moved to cancelling: stop its process if it runs here."""


class NoWakeup:
    """For API-only processes: other nodes notice by polling and heartbeats."""

    def job_queued(self) -> None:
        return None

    def cancel_requested(self, job_id: str) -> None:
        return None
