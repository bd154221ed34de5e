"""The jobyard Python SDK: :class:`Client`, its models and errors.

Independent of the server code: it needs only httpx and pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobyard.sdk.client import (
        Client,
    )
    from jobyard.sdk.config import (
        find_server,
        write_credentials,
    )
    from jobyard.sdk.definitions import (
        Definition,
    )
    from jobyard.sdk.errors import (
        APIError,
        Conflict,
        ConnectionFailed,
        Forbidden,
        IdempotencyConflict,
        InvalidInput,
        InvalidTransition,
        NotFound,
        PayloadTooLarge,
        QuotaExceeded,
        RateLimited,
        ServerUnavailable,
        StaleState,
        StoreUnavailable,
        Unauthenticated,
        raise_for_response,
    )
    from jobyard.sdk.models import (
        TERMINAL_STATUSES,
        BatchItem,
        Environment,
        Folder,
        FolderFile,
        InputRole,
        Job,
        JobBatch,
        JobEvent,
        JobPage,
        JobSummary,
        LogChunk,
        Model,
        ModelVersion,
        NodeStatus,
        OutcomeCounts,
        OutputRole,
        PerformanceMetrics,
        QueueByPriority,
        QueueStatistics,
        ResourceUtilization,
        SandboxStatus,
        SystemStatus,
        Usage,
    )
    from jobyard.sdk.results import (
        JobResults,
    )
    from jobyard.sdk.stream import (
        EventStream,
        StreamEvent,
    )

#: where each public name lives (imported on first use: the server reads credentials
#: without loading httpx)
_WHERE = {
    "Client": "jobyard.sdk.client",
    "find_server": "jobyard.sdk.config",
    "write_credentials": "jobyard.sdk.config",
    "Definition": "jobyard.sdk.definitions",
    "APIError": "jobyard.sdk.errors",
    "Conflict": "jobyard.sdk.errors",
    "ConnectionFailed": "jobyard.sdk.errors",
    "Forbidden": "jobyard.sdk.errors",
    "IdempotencyConflict": "jobyard.sdk.errors",
    "InvalidInput": "jobyard.sdk.errors",
    "InvalidTransition": "jobyard.sdk.errors",
    "NotFound": "jobyard.sdk.errors",
    "PayloadTooLarge": "jobyard.sdk.errors",
    "QuotaExceeded": "jobyard.sdk.errors",
    "RateLimited": "jobyard.sdk.errors",
    "ServerUnavailable": "jobyard.sdk.errors",
    "StaleState": "jobyard.sdk.errors",
    "StoreUnavailable": "jobyard.sdk.errors",
    "Unauthenticated": "jobyard.sdk.errors",
    "raise_for_response": "jobyard.sdk.errors",
    "TERMINAL_STATUSES": "jobyard.sdk.models",
    "BatchItem": "jobyard.sdk.models",
    "Environment": "jobyard.sdk.models",
    "Folder": "jobyard.sdk.models",
    "FolderFile": "jobyard.sdk.models",
    "InputRole": "jobyard.sdk.models",
    "Job": "jobyard.sdk.models",
    "JobBatch": "jobyard.sdk.models",
    "JobEvent": "jobyard.sdk.models",
    "JobPage": "jobyard.sdk.models",
    "JobSummary": "jobyard.sdk.models",
    "LogChunk": "jobyard.sdk.models",
    "Model": "jobyard.sdk.models",
    "ModelVersion": "jobyard.sdk.models",
    "NodeStatus": "jobyard.sdk.models",
    "OutcomeCounts": "jobyard.sdk.models",
    "OutputRole": "jobyard.sdk.models",
    "PerformanceMetrics": "jobyard.sdk.models",
    "QueueByPriority": "jobyard.sdk.models",
    "QueueStatistics": "jobyard.sdk.models",
    "ResourceUtilization": "jobyard.sdk.models",
    "SandboxStatus": "jobyard.sdk.models",
    "SystemStatus": "jobyard.sdk.models",
    "Usage": "jobyard.sdk.models",
    "JobResults": "jobyard.sdk.results",
    "EventStream": "jobyard.sdk.stream",
    "StreamEvent": "jobyard.sdk.stream",
}

__all__ = [
    "TERMINAL_STATUSES",
    "APIError",
    "BatchItem",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Definition",
    "Environment",
    "EventStream",
    "Folder",
    "FolderFile",
    "Forbidden",
    "IdempotencyConflict",
    "InputRole",
    "InvalidInput",
    "InvalidTransition",
    "Job",
    "JobBatch",
    "JobEvent",
    "JobPage",
    "JobResults",
    "JobSummary",
    "LogChunk",
    "Model",
    "ModelVersion",
    "NodeStatus",
    "NotFound",
    "OutcomeCounts",
    "OutputRole",
    "PayloadTooLarge",
    "PerformanceMetrics",
    "QueueByPriority",
    "QueueStatistics",
    "QuotaExceeded",
    "RateLimited",
    "ResourceUtilization",
    "SandboxStatus",
    "ServerUnavailable",
    "StaleState",
    "StoreUnavailable",
    "StreamEvent",
    "SystemStatus",
    "Unauthenticated",
    "Usage",
    "find_server",
    "raise_for_response",
    "write_credentials",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
