"""The in-job helper: report progress, metrics, warnings and batch items from inside a
running job to jobyard. Standard library only, so any job's Python can import it::

    from jobyard import runtime

    runtime.progress(40, "scoring")
    runtime.metrics(records_processed=1200, total_records=3000, errors=2)
    runtime.warn("some timestamps had to be inferred", type="DataQuality")
    runtime.item_done(7, ok=False, error="bad row")

Each call POSTs the marker object (see ``jobyard.markers``) to the job's report endpoint
with the job's own token
(``JOBYARD_API_URL``, ``JOBYARD_JOB_ID``, ``JOBYARD_JOB_TOKEN``, set by jobyard). When the
API cannot be reached, the same report is printed as a marker line on stdout, which
the executor reads from the log: nothing is lost. Outside a job the calls only print.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from jobyard.markers import format_marker

TIMEOUT_S = 5.0


def progress(percent: float | None = None, stage: str | None = None) -> None:
    """How far the job is (0–100) and what it is doing now."""
    _report("progress", percent=percent, stage=stage)


def metrics(
    *,
    records_processed: int | None = None,
    total_records: int | None = None,
    errors: int | None = None,
    warnings: int | None = None,
) -> None:
    """Record counts (absolute values, not increments)."""
    values = {
        "records_processed": records_processed,
        "total_records": total_records,
        "errors": errors,
        "warnings": warnings,
    }
    _report("metrics", **{k: v for k, v in values.items() if v is not None})


def warn(message: str, type: str = "general") -> None:
    """A warning; warnings are counted by type."""
    _report("warning", category=type, message=message)


def item_done(index: int, ok: bool = True, error: str | None = None) -> None:
    """One input item (line ``index`` of ``inputs.jsonl``, from 0) is processed."""
    _report("item", index=index, ok=ok, error=error)


def _report(type_: str, **fields: Any) -> None:
    """POST the report (the same object a marker line carries); print the marker if
    that fails."""
    payload = {"type": type_, **fields}
    url = os.environ.get("JOBYARD_API_URL")
    job_id = os.environ.get("JOBYARD_JOB_ID")
    token = os.environ.get("JOBYARD_JOB_TOKEN")
    if url and job_id and token:
        request = urllib.request.Request(  # noqa: S310 - the URL jobyard gave the job
            f"{url.rstrip('/')}/v1/jobs/{job_id}/report",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S):  # noqa: S310
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
    print(format_marker(type_, **fields), flush=True)
