"""jobyard: a self-hosted job execution service.

``jobyard.Client`` is the Python SDK; ``jobyard`` on the command line is the CLI.
"""

from __future__ import annotations

from jobyard.sdk.client import Client

__version__ = "0.1.0"

__all__ = ["Client", "__version__"]
