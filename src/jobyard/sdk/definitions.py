"""SDK methods for job definitions (a model version with bound inputs and a schedule)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from jobyard.sdk.base import BaseClient
from jobyard.sdk.models import Job


class Definition(BaseModel):
    """A job definition: a model version with bound inputs, parameters and an optional
    cron ``schedule`` (``docs/how-to/models.md``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    model_version_id: str
    role_bindings: list[dict[str, Any]]
    parameters: dict[str, Any]
    active: bool
    schedule: str | None = None
    next_run_at: str | None = None
    last_job_id: str | None = None


class DefinitionsMixin(BaseClient):
    """Job definitions."""

    def create_definition(
        self,
        name: str,
        model: str,
        *,
        role_bindings: Sequence[Mapping[str, Any]] = (),
        parameters: Mapping[str, Any] | None = None,
        environment: str | None = None,
        output_folder: str | None = None,
        schedule: str | None = None,
        active: bool = True,
        priority: str = "normal",
        timeout_s: float | None = None,
        description: str | None = None,
    ) -> Definition:
        """A new definition of ``model`` (``name:version``); with ``schedule`` (cron) it
        runs by itself while ``active``."""
        body: dict[str, Any] = {
            "name": name,
            "model": model,
            "role_bindings": [dict(b) for b in role_bindings],
            "parameters": dict(parameters or {}),
            "active": active,
            "priority": priority,
        }
        for key, value in (
            ("environment", environment),
            ("output_folder", output_folder),
            ("schedule", schedule),
            ("timeout_s", timeout_s),
            ("description", description),
        ):
            if value is not None:
                body[key] = value
        return self._parse(Definition, self._request("POST", "/v1/definitions", json=body))

    def definitions(self) -> list[Definition]:
        """Your project's definitions."""
        return [Definition.model_validate(i) for i in self._items("/v1/definitions")]

    def definition(self, def_id: str) -> Definition:
        """The definition with this id."""
        return self._parse(
            Definition, self._request("GET", f"/v1/definitions/{quote(def_id, safe='')}")
        )

    def delete_definition(self, def_id: str) -> None:
        """Delete the definition."""
        self._request("DELETE", f"/v1/definitions/{quote(def_id, safe='')}")

    def run_definition(self, def_id: str, parameters: Mapping[str, Any] | None = None) -> Job:
        """Run the definition now, ``parameters`` merged over its own; the new job."""
        body = {"parameters": dict(parameters or {})}
        return self._parse(
            Job, self._request("POST", f"/v1/definitions/{quote(def_id, safe='')}/run", json=body)
        )
