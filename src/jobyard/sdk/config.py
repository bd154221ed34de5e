"""Where clients find the server: arguments, then environment, then ``credentials.json``.

``jobyard serve`` writes ``credentials.json`` (``url`` and ``api_key``, mode 0600) into
its data directory (``$JOBYARD_HOME``, default ``./.jobyard``), so a local user needs
neither flags nor environment variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
CREDENTIALS_FILE = "credentials.json"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The data directory: ``$JOBYARD_HOME`` or ``./.jobyard``."""
    env = os.environ if environ is None else environ
    return Path(env.get("JOBYARD_HOME") or ".jobyard")


def read_credentials(directory: Path) -> dict[str, Any]:
    """The content of ``credentials.json`` in ``directory``; ``{}`` if absent or unreadable."""
    try:
        data = json.loads((directory / CREDENTIALS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_server(
    url: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, str | None]:
    """The server URL and API key to use.

    Each value comes from the first source that has it: the arguments,
    ``JOBYARD_URL`` / ``JOBYARD_API_KEY``, then ``credentials.json`` in the data
    directory. Without any URL the default is ``http://127.0.0.1:8000``.
    """
    env = os.environ if environ is None else environ
    url = url or env.get("JOBYARD_URL") or None
    token = token or env.get("JOBYARD_API_KEY") or None
    if url is None or token is None:
        creds = read_credentials(data_dir(env))
        creds_url, creds_key = creds.get("url"), creds.get("api_key")
        url = url or (creds_url if isinstance(creds_url, str) and creds_url else None)
        token = token or (creds_key if isinstance(creds_key, str) and creds_key else None)
    return (url or DEFAULT_URL).rstrip("/"), token


def write_credentials(data_dir: Path, url: str, api_key: str) -> Path:
    """Write ``credentials.json`` (mode 0600) into ``data_dir`` atomically; return its path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / CREDENTIALS_FILE
    # mkstemp creates the file with mode 0600, so the key is never readable by others.
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", suffix=".tmp", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"url": url, "api_key": api_key}, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
