"""jobyard: a self-hosted job execution service.

``jobyard.Client`` is the Python SDK; ``jobyard`` on the command line is the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobyard.sdk.client import Client

__version__ = "0.1.0"

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    # the SDK (httpx, pydantic) loads only when asked for: the server and jobs need less
    if name == "Client":
        from jobyard.sdk.client import Client

        return Client
    raise AttributeError(name)
