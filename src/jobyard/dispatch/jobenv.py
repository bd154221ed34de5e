"""The environment a job's process gets: an allowlist, never the server's secrets."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Variables copied from the server's environment; nothing else leaks into a job.
INHERITED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
)


def build_env(
    *,
    job_id: str,
    attempt: int,
    api_url: str,
    workdir: Path,
    parameters: Mapping[str, Any],
    user_env: Mapping[str, str],
    job_token: str = "",
    server_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    source = os.environ if server_env is None else server_env
    env = {name: source[name] for name in INHERITED if name in source}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(user_env)
    env.update(
        {
            "JOBYARD_JOB_ID": job_id,
            "JOBYARD_ATTEMPT": str(attempt),
            "JOBYARD_API_URL": api_url,
            "JOBYARD_JOB_TOKEN": job_token,
            "JOBYARD_WORKDIR": str(workdir),
            "JOBYARD_PARAMETERS": json.dumps(parameters, sort_keys=True),
        }
    )
    return env
