"""What ``jobyard serve`` logs and how: text lines for a person, or one JSON object per
line for a log collector (``--log-format json``), at ``--log-level``.

Loggers: ``jobyard.access`` (one line per HTTP request: method, path, status, time; off
with ``--no-access-log``), ``jobyard.jobs`` (one line per job state change this node
makes: starting, running, and how the job ended), and the rest of ``jobyard``."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: ``extra`` fields copied into a JSON line when a record has them
FIELDS = ("method", "path", "status", "duration_ms", "client", "job_id", "state", "node_id")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", …fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text") -> None:
    """One handler on stderr for every logger (uvicorn's too: start it with
    ``log_config=None``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # alembic's and uvicorn's chatter stays at warning unless asked for with debug
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("alembic", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(quiet)
