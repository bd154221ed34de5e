"""Reports a job makes about itself (the marker objects of ``jobyard.markers``, sent
as lines on stdout or POSTed with the job token), checked and typed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobyard import errors

REPORT_TYPES = ("progress", "metrics", "warning", "item")
MAX_TEXT = 2000
#: the largest counts the job row holds: record counts (BIGINT), error and warning counts
#: and item indexes (INTEGER, 32 bits on PostgreSQL)
MAX_RECORDS = 2**63 - 1
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True, kw_only=True)
class Report:
    type: str
    percent: float | None = None
    stage: str | None = None
    records_processed: int | None = None
    total_records: int | None = None
    errors: int | None = None
    warnings: int | None = None
    warning_type: str | None = None
    message: str | None = None
    index: int | None = None
    ok: bool = True
    error: str | None = None


def _num(obj: dict[str, Any], key: str, *, lo: float = 0, hi: float = math.inf) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise errors.InvalidInput(f"{key} must be a number between {lo:g} and {hi:g}", field=key)
    return float(value)


def _int(obj: dict[str, Any], key: str, hi: int = MAX_COUNT) -> int | None:
    """A whole number from 0 to ``hi`` (a float is truncated), compared exactly."""
    value = obj.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= hi
        or not math.isfinite(value)
    ):
        raise errors.InvalidInput(f"{key} must be a number between 0 and {hi}", field=key)
    return int(value)


def _text(obj: dict[str, Any], key: str, limit: int = MAX_TEXT) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{key} must be a string", field=key)
    return value[:limit]


def parse_report(obj: Any) -> Report:
    """A :class:`Report` from a marker/report object; InvalidInput naming the field."""
    if not isinstance(obj, dict):
        raise errors.InvalidInput("a report must be a JSON object with a type", field="type")
    kind = obj.get("type")
    if kind not in REPORT_TYPES:
        raise errors.InvalidInput(f"type must be one of {', '.join(REPORT_TYPES)}", field="type")
    if kind == "progress":
        return Report(
            type=kind, percent=_num(obj, "percent", hi=100), stage=_text(obj, "stage", 200)
        )
    if kind == "metrics":
        return Report(
            type=kind,
            records_processed=_int(obj, "records_processed", MAX_RECORDS),
            total_records=_int(obj, "total_records", MAX_RECORDS),
            errors=_int(obj, "errors"),
            warnings=_int(obj, "warnings"),
        )
    if kind == "warning":
        message = _text(obj, "message")
        if not message:
            raise errors.InvalidInput("a warning needs a message", field="message")
        return Report(
            type=kind,
            warning_type=_text(obj, "category", 100) or "general",
            message=message,
        )
    index = _int(obj, "index")
    if index is None:
        raise errors.InvalidInput("an item report needs its index", field="index")
    ok = obj.get("ok", True)
    if not isinstance(ok, bool):
        raise errors.InvalidInput("ok must be true or false", field="ok")
    return Report(type=kind, index=index, ok=ok, error=_text(obj, "error"))


def eta(percent: float | None, started_at: datetime | None, now: datetime) -> datetime | None:
    """Estimated completion from the progress rate so far (None without progress)."""
    if percent is None or started_at is None or percent <= 0:
        return None
    if percent >= 100:
        return now
    elapsed = (now - started_at).total_seconds()
    return now + timedelta(seconds=elapsed * (100 - percent) / percent)


def column_values(report: Report, now: datetime) -> dict[str, Any]:
    """The job fields a progress or metrics report sets (values are absolute)."""
    if report.type == "progress":
        values: dict[str, Any] = {"progress_updated_at": now}
        if report.percent is not None:
            values["progress_percent"] = report.percent
        if report.stage is not None:
            values["progress_stage"] = report.stage
        return values
    pairs = (
        ("records_processed", report.records_processed),
        ("total_records", report.total_records),
        ("error_count", report.errors),
        ("warning_count", report.warnings),
    )
    return {col: v for col, v in pairs if v is not None}
