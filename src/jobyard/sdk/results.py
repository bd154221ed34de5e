"""SDK methods for a job's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from jobyard.sdk.base import BaseClient


class ResultFile(BaseModel):
    """One file a job produced (``download_url`` fetches it)."""

    model_config = ConfigDict(extra="allow")

    path: str
    type: str
    format: str
    size: int
    sha256: str
    record_count: int | None = None
    role: str | None = None
    download_url: str


class JobResults(BaseModel):
    """What a job produced: its files (``primary_output``, ``artifacts``), a summary
    and its execution metrics, recorded when it ended."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    status: str
    success: bool
    partial: bool
    completed_at: str | None = None
    primary_output: ResultFile | None = None
    artifacts: list[ResultFile] | None = None
    summary: dict[str, Any]
    execution_metrics: dict[str, Any]


class ResultsMixin(BaseClient):
    """Results."""

    def results(
        self, job_id: str, *, detailed: bool = True, output_type: str | None = None
    ) -> JobResults:
        """What the job produced (recorded when it ended; ``partial`` after a failure or
        cancel)."""
        params: dict[str, str] = {"format": "detailed" if detailed else "summary"}
        if output_type:
            params["output_type"] = output_type
        return self._parse(
            JobResults,
            self._request("GET", f"/v1/jobs/{quote(job_id, safe='')}/results", params=params),
        )

    def download_results(self, job_id: str, dest: str | Path) -> list[Path]:
        """Download every result file into ``dest`` (keeping relative paths)."""
        root = Path(dest)
        written = []
        for f in self.results(job_id).artifacts or []:
            target = (root / f.path).resolve()
            if not target.is_relative_to(root.resolve()):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            path = f"/v1/jobs/{quote(job_id, safe='')}/results/files/{quote(f.path)}"
            with self._stream("GET", path) as resp, target.open("wb") as out:
                for chunk in resp.iter_bytes():
                    out.write(chunk)
            written.append(target)
        return written
