"""Reading HTML forms into the values the services take, with the problems by field
(shown next to each field)."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData

PARAM = "param."
KIND = "kind."


class FieldErrors:
    def __init__(self) -> None:
        self.by_field: dict[str, str] = {}

    def add(self, field: str, message: str) -> None:
        self.by_field.setdefault(field, message)

    def __bool__(self) -> bool:
        return bool(self.by_field)


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def parse_parameters(form: FormData, problems: FieldErrors) -> dict[str, Any]:
    """Parameters from ``param.<name>`` fields (typed by ``kind.<name>``: string, number,
    integer, boolean or json) and a JSON object in ``parameters_json``; an empty field
    is left out (the model's default applies)."""
    out: dict[str, Any] = {}
    raw = text(form, "parameters_json")
    if raw:
        try:
            value = json.loads(raw)
        except ValueError as e:
            problems.add("parameters_json", f"parameters: not valid JSON ({e})")
        else:
            if isinstance(value, dict):
                out.update(value)
            else:
                problems.add("parameters_json", 'parameters: a JSON object, like {"x": 1}')
    for key in form:
        if key.startswith(KIND) and text(form, key) == "boolean":  # unchecked: not sent
            name = key[len(KIND) :]
            out[name] = text(form, PARAM + name) in ("1", "true", "on")
        if not key.startswith(PARAM):
            continue
        name = key[len(PARAM) :]
        field = f"parameters.{name}"
        value = text(form, key)
        kind = text(form, KIND + name) or "string"
        if kind == "boolean" or value == "":
            continue
        if kind == "string":
            out[name] = value
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            problems.add(field, f"{field}: {value!r} is not a valid {kind}")
            continue
        if kind == "integer" and not isinstance(parsed, int):
            problems.add(field, f"{field}: {value!r} is not a whole number")
        elif kind == "number" and not isinstance(parsed, int | float):
            problems.add(field, f"{field}: {value!r} is not a number")
        else:
            out[name] = parsed
    return out


def field_of(details: dict[str, Any], default: str = "form") -> str:
    """The form field an error names (``parameters.x`` stays, ``parameters`` alone is
    the JSON box)."""
    found = details.get("field")
    if not isinstance(found, str) or not found:
        return default
    return "parameters_json" if found == "parameters" else found
