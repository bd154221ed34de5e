"""``jobyard.sdk``'s public names, guarded as httpx guards its own
(``tests/test_exported_members.py``): ``__all__`` lists exactly what the package exports,
everything a ``Client`` method takes or returns is among it, and each name is documented."""

from __future__ import annotations

import ast
import inspect
import types
import typing
from pathlib import Path
from typing import Any

import jobyard.sdk as sdk
from jobyard.sdk import Client
from jobyard.sdk.errors import APIError


def _type_checking_names() -> set[str]:
    """The names imported under ``if TYPE_CHECKING:`` in ``jobyard/sdk/__init__.py``
    (what type checkers and editors see)."""
    tree = ast.parse(Path(sdk.__file__).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return {
                alias.asname or alias.name
                for stmt in node.body
                if isinstance(stmt, ast.ImportFrom)
                for alias in stmt.names
            }
    raise AssertionError("no TYPE_CHECKING block")


def _sdk_classes(hint: Any) -> set[type]:
    """The classes of ``jobyard.sdk`` that appear in a type hint."""
    found: set[type] = set()
    if isinstance(hint, type) and hint.__module__.startswith("jobyard.sdk"):
        if not hint.__name__.startswith("_"):  # a private sentinel (``_Unset``)
            found.add(hint)
    for arg in hint if isinstance(hint, list) else typing.get_args(hint):  # Callable[[…], …]
        found |= _sdk_classes(arg)
    return found


def _public_methods() -> list[tuple[str, Any]]:
    return [
        (name, member)
        for name, member in inspect.getmembers(Client, inspect.isfunction)
        if not name.startswith("_")
    ]


def test_all_lists_exactly_what_the_package_exports() -> None:
    assert len(sdk.__all__) == len(set(sdk.__all__)), "a name is listed twice"
    assert set(sdk.__all__) == set(sdk._WHERE), "__all__ and _WHERE differ"
    assert set(sdk.__all__) == _type_checking_names(), (
        "__all__ and the TYPE_CHECKING imports differ"
    )
    for name in sdk.__all__:
        value = getattr(sdk, name)
        module = getattr(value, "__module__", None)
        if isinstance(value, type | types.FunctionType):
            assert module == sdk._WHERE[name], f"{name} lives in {module}, not {sdk._WHERE[name]}"


def test_what_client_methods_take_and_return_is_exported() -> None:
    missing: dict[str, str] = {}
    for name, method in _public_methods():
        for hint in typing.get_type_hints(method).values():
            for cls in _sdk_classes(hint):
                if cls.__name__ not in sdk.__all__ or getattr(sdk, cls.__name__) is not cls:
                    missing[cls.__name__] = f"Client.{name}"
    assert not missing, f"not exported from jobyard.sdk (used by): {missing}"


def test_every_error_class_is_exported() -> None:
    def subclasses(cls: type) -> set[type]:
        found = {cls}
        sub: type
        for sub in cls.__subclasses__():
            found |= subclasses(sub)
        return found

    errors = {c.__name__ for c in subclasses(APIError) if c.__module__ == "jobyard.sdk.errors"}
    assert errors <= set(sdk.__all__), errors - set(sdk.__all__)


def test_every_public_name_and_client_method_is_documented() -> None:
    undocumented = [
        name
        for name in sdk.__all__
        if isinstance(getattr(sdk, name), type | types.FunctionType)
        and not (getattr(sdk, name).__doc__ or "").strip()
    ]
    undocumented += [f"Client.{n}" for n, m in _public_methods() if not (m.__doc__ or "").strip()]
    assert not undocumented, undocumented
