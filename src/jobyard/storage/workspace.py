"""Where a job's files live on the node: working directory and attempt logs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class Workspace:
    """``<data_dir>/jobs/<job id>/{work/, logs/attempt-N.log}``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "jobs"

    def job_dir(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise ValueError(f"invalid job id {job_id!r}")
        return self.root / job_id

    def workdir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "work"

    def log_path(self, job_id: str, attempt: int) -> Path:
        return self.job_dir(job_id) / "logs" / f"attempt-{attempt}.log"

    def exit_status_path(self, job_id: str, attempt: int) -> Path:
        """Where the executor records an attempt's exit status as it happens (JSON
        ``{"exit-code": N}``), for a restarted node to find the real outcome."""
        return self.job_dir(job_id) / "logs" / f"attempt-{attempt}.exit"

    def write_parameters(self, job_id: str, parameters: Mapping[str, Any]) -> Path:
        """Write ``parameters.json`` into the job's working directory."""
        work = self.workdir(job_id)
        tmp = work / ".parameters.json.tmp"
        tmp.write_text(json.dumps(parameters, indent=2, sort_keys=True))
        os.replace(tmp, work / "parameters.json")
        return work / "parameters.json"
