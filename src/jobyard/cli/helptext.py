"""Help text without Python types: ``--wait`` instead of ``--wait <bool>``, ``--status
TEXT`` instead of ``<list[str]>``, ``--limit INTEGER [1 to 500]`` instead of ``<int range>
[1<=x<=500]``; and choices that say what is allowed without pydantic's wording.

Typer (0.2x) shows each option's Python type in the help's type column; ``install``
replaces the two methods that build that column, once, for every command. An option's own
``metavar`` still wins."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import typer
from typer import core

_LABELS: dict[type, str] = {
    str: "TEXT",
    int: "INTEGER",
    float: "NUMBER",
    Path: "PATH",
    datetime: "TIME",
}


def _label(annotation: Any) -> str | None:
    """The plain label of a type: ``TEXT``, ``INTEGER``, … (None for a flag)."""
    if get_origin(annotation) in (list, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return _label(args[0]) if args else "TEXT"
    if annotation is bool:
        return None
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return "|".join(str(m.value) for m in annotation)
        for kind, label in _LABELS.items():
            if issubclass(annotation, kind):
                return label
    return "VALUE"


def _display_type(self: Any, ctx: Any) -> str | None:
    if isinstance(self, core.TyperOption) and (self.is_bool_flag or self.count):
        return None
    if self.metavar is not None:
        # an argument shows its metavar as its name already
        return None if isinstance(self, core.TyperArgument) else str(self.metavar)
    descriptor = getattr(self, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    label = _label(annotation)
    if label and descriptor is not None and descriptor.is_choice and descriptor.choices:
        label = "|".join(str(getattr(c, "value", c)) for c in descriptor.choices)
    return label


def _range(self: Any) -> str | None:
    low, high = getattr(self, "min", None), getattr(self, "max", None)
    if low is None and high is None:
        return None
    if high is None:
        return f"at least {low}"
    if low is None:
        return f"at most {high}"
    return f"{low} to {high}"


def install() -> None:
    """Plain type labels in every command's help (idempotent)."""
    for cls in (core.TyperOption, core.TyperArgument):
        if hasattr(cls, "display_type_rich"):
            cls.display_type_rich = _display_type  # type: ignore[method-assign]
        if hasattr(cls, "_get_number_range_help_str"):
            cls._get_number_range_help_str = _range  # type: ignore[method-assign]


def choice(kind: type[Enum]) -> Callable[[str | None], str | None]:
    """A callback for a ``str`` option that takes one of ``kind``'s values (any case) and
    gives that value, with an error that lists them (an enum-typed option's error says
    "Value error, …")."""
    allowed = ", ".join(str(m.value) for m in kind)

    def convert(value: str | None) -> str | None:
        if value is None:
            return None
        for member in kind:
            if str(member.value) == value.strip().lower():
                return str(member.value)
        raise typer.BadParameter(f"{value!r} is not one of {allowed}")

    return convert


def metavar(kind: type[Enum]) -> str:
    """``low|normal|high|critical``."""
    return "|".join(str(m.value) for m in kind)
