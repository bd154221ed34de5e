"""What the node can do to wall jobs in: reported at start, in ``/readyz`` and in
``/v1/system/status`` (kept apart from the sandbox itself, which a node that runs
no sandbox never imports)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_USER = "nobody"  #: jobs run as this user when the server is root and none is set


@dataclass(frozen=True)
class SandboxSupport:
    """Whether this node's jobs run in a sandbox and under kernel limits, and why not."""

    sandboxed: bool
    reason: str  #: why jobs are not sandboxed ('' when they are)
    kernel_limits: bool
    limits_reason: str  #: why there are no kernel limits ('' when there are)

    @classmethod
    def off(cls, reason: str) -> SandboxSupport:
        return cls(False, reason, False, "jobs are not sandboxed")

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "jobs_sandboxed": self.sandboxed,
            "kernel_limits": self.kernel_limits,
        }
        if self.reason:
            out["sandbox_unavailable"] = self.reason
        if self.limits_reason:
            out["kernel_limits_unavailable"] = self.limits_reason
        return out
