"""Pure parsing of CLI values (``k=v`` pairs, parameters, times); raise ``ValueError``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any


def split_pair(item: str, what: str = "value") -> tuple[str, str]:
    """``"k=v"`` → ``("k", "v")``; the value may contain ``=``."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{what} {item!r} must look like KEY=VALUE")
    return key, value


def parse_value(text: str) -> Any:
    """The JSON value of ``text`` when it is valid JSON (``0.7``, ``true``, ``[1]``), else
    the text itself."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity stay strings


def parse_params(items: Iterable[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parameters from ``--param k=v`` items on top of ``base``; values are JSON when they
    parse as JSON, else strings. ``k.sub`` is an ordinary key."""
    params = dict(base or {})
    for item in items:
        key, value = split_pair(item, "parameter")
        params[key] = parse_value(value)
    return params


def parse_pairs(items: Iterable[str], what: str = "value") -> dict[str, str]:
    """``K=V`` items as a dict of strings (for ``--env`` and ``--metadata``)."""
    return dict(split_pair(item, what) for item in items)


def load_params_file(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must contain a JSON object")
    return data


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is local time."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2030-01-01T10:00:00Z)") from exc
    return value if value.tzinfo is not None else value.astimezone()


def split_csv(items: Iterable[str]) -> list[str]:
    """``["a,b", "c"]`` → ``["a", "b", "c"]`` (empty parts dropped)."""
    return [part.strip() for item in items for part in item.split(",") if part.strip()]
