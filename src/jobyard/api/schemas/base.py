"""What every wire model module uses: ``Strict`` input models, the JSON depth guard and
the error body."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

MAX_DEPTH = 32


class Strict(BaseModel):
    """An input model that refuses unknown fields."""

    model_config = ConfigDict(extra="forbid")


def depth(value: Any) -> int:
    """How deeply JSON containers nest in ``value`` (a scalar is 0)."""
    stack, deepest = [(value, 0)], 0
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def shallow(value: Any) -> Any:
    """Refuse JSON nested deeper than ``MAX_DEPTH`` levels (a validator)."""
    if depth(value) > MAX_DEPTH:
        raise ValueError(f"nests deeper than {MAX_DEPTH} levels")
    return value


class ErrorOut(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


def attribute_reader(names: Iterable[str]) -> Callable[[Any], dict[str, Any]]:
    """A function that reads these attributes of an object into a dict: how a wire
    model copies the domain's fields of the same names. Generated as one dict display
    (as ``dataclasses`` generates ``__init__``), a few times faster than a loop of
    ``getattr``: answering a job is on the submit's fast path."""
    fields = list(names)
    if not all(n.isidentifier() for n in fields):
        raise ValueError(f"not attribute names: {fields}")
    source = "lambda o: {" + ", ".join(f"{n!r}: o.{n}" for n in fields) + "}"
    reader: Callable[[Any], dict[str, Any]] = eval(source)  # noqa: S307 (identifiers only)
    return reader
