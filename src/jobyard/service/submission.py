"""Turning a job request that names things (a model version, an environment, folders,
role bindings) into a resolved :class:`JobSpec`, with every error naming its field."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from jobyard import errors
from jobyard.domain.auth import Principal
from jobyard.domain.folders import Folder, FolderFile
from jobyard.domain.jobs import JobSpec
from jobyard.domain.registry import Environment, ModelVersion


class Registry(Protocol):
    def resolve(self, principal: Principal, ref: str) -> ModelVersion: ...

    def check_parameters(
        self, version: ModelVersion, parameters: dict[str, Any]
    ) -> dict[str, Any]: ...

    def get_environment(self, principal: Principal, ref: str) -> Environment: ...


class Folders(Protocol):
    def get(self, principal: Principal, ref: str) -> Folder: ...

    def files(self, principal: Principal, ref: str) -> list[FolderFile]: ...


@dataclass(frozen=True, kw_only=True)
class RoleBinding:
    role: str
    folder: str | None = None  #: a folder id or name
    value: Any = None


@dataclass(frozen=True, kw_only=True)
class JobRequest:
    """A submission as the user wrote it: ``spec`` plus references to resolve."""

    spec: JobSpec
    model: str | None = None
    environment: str | None = None
    input_folder: str | None = None
    output_folder: str | None = None
    bindings: Sequence[RoleBinding] = field(default_factory=tuple)
    inputs: Sequence[Any] | None = None  #: batch items, one JSON value each
    inputs_from_folder: bool = False  #: one item per file of the input folder
    immediate: bool = False  #: to the front of the queue (manual retries)

    @property
    def is_plain(self) -> bool:
        """Whether the request names nothing that must be read or checked elsewhere
        before it is accepted (a command job without idempotency key or notifications)."""
        return (
            self.model is None
            and self.environment is None
            and self.input_folder is None
            and self.output_folder is None
            and not self.bindings
            and self.inputs is None
            and not self.inputs_from_folder
            and self.spec.idempotency_key is None
            and self.spec.notifications is None
        )


#: marks the hash of a request as sent; rows accepted before it hold the 64 hex digits of
#: the hash of the resolved spec (see ``JobService``'s comparison of the two)
REQUEST_HASH_PREFIX = "v2:"
#: set by the server, not sent: not part of the hash
_SERVER_SET = ("idempotency_key", "submitted_by", "submitted_key_id")


def request_hash(request: JobRequest, project_id: str | None) -> str:
    """The hash of ``request`` as sent (references by the names given, batch items as
    given, notifications before normalisation), in the project it is submitted to
    (``project_id``: the key's project scope, if any): what a retry under the same
    idempotency key must match. ``v2:`` and 43 characters of URL-safe base64."""
    body = asdict(request)
    spec = body["spec"]
    for name in _SERVER_SET:
        spec.pop(name, None)
    spec["project_id"] = project_id or spec["project_id"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_json_value)
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
    return REQUEST_HASH_PREFIX + digest.decode()


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    return str(value)


def _lookup(what: str, fn: Any, principal: Principal, ref: str) -> Any:
    try:
        value = fn(principal, ref)
    except errors.NotFound as e:
        raise errors.InvalidInput(f"{what}: {e.message}", field=what) from e
    return value


def resolve(
    request: JobRequest, principal: Principal, registry: Registry, folders: Folders
) -> JobSpec:
    spec = request.spec
    version: ModelVersion | None = None
    if request.model is not None:
        if spec.entrypoint is not None or spec.argv is not None:
            raise errors.InvalidInput(
                "entrypoint: give either an entrypoint or a model, not both", field="entrypoint"
            )
        version = _lookup("model", registry.resolve, principal, request.model)
        parameters = registry.check_parameters(version, dict(spec.parameters))
        spec = replace(
            spec,
            model_version_id=version.id,
            model_sha256=version.artifact_sha256,
            parameters=parameters,
        )
    elif request.bindings:
        raise errors.InvalidInput(
            "role_bindings: role bindings need a model", field="role_bindings"
        )
    env_ref = request.environment or (version.default_environment_id if version else None)
    if env_ref is not None:
        env: Environment = _lookup("environment", registry.get_environment, principal, env_ref)
        spec = replace(spec, environment_id=env.id, slots=env.cpu_slots)
    if request.input_folder is not None:
        folder: Folder = _lookup("input_folder", folders.get, principal, request.input_folder)
        spec = replace(spec, input_folder_id=folder.id)
    if request.output_folder is not None:
        out: Folder = _lookup("output_folder", folders.get, principal, request.output_folder)
        spec = replace(spec, output_folder_id=out.id)
    if request.inputs_from_folder and request.input_folder is None:
        raise errors.InvalidInput(
            "inputs_from_folder needs an input_folder", field="inputs_from_folder"
        )
    if version is not None:
        bindings = _bindings(request, version, principal, folders)
        bound = {
            b["role"]: (f"input/{b['role']}" if "folder_id" in b else b["value"]) for b in bindings
        }
        spec = replace(spec, input_bindings=bindings, parameters={**bound, **spec.parameters})
    return spec


def _bindings(
    request: JobRequest, version: ModelVersion, principal: Principal, folders: Folders
) -> tuple[dict[str, Any], ...]:
    known = {r.role: r for r in version.input_roles}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for b in request.bindings:
        if b.role not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise errors.InvalidInput(
                f"role_bindings: model {version.ref} has no input role {b.role!r}"
                f" (its roles: {allowed})",
                field="role_bindings",
            )
        if b.role in seen:
            raise errors.InvalidInput(
                f"role_bindings: role {b.role!r} is bound twice", field="role_bindings"
            )
        seen.add(b.role)
        if (b.folder is None) == (b.value is None):
            raise errors.InvalidInput(
                f"role_bindings: role {b.role!r} needs exactly one of folder or value",
                field="role_bindings",
            )
        if b.folder is not None:
            folder: Folder = _lookup("role_bindings", folders.get, principal, b.folder)
            out.append({"role": b.role, "folder_id": folder.id})
        else:
            out.append({"role": b.role, "value": b.value})
    if request.input_folder is None:
        missing = [r for r in known.values() if r.required and r.role not in seen]
        if missing:
            names = ", ".join(r.role for r in missing)
            raise errors.InvalidInput(
                f"role_bindings: required input role(s) {names} of model {version.ref} are not"
                " bound (bind each to a folder or a value, or give an input_folder)",
                field="role_bindings",
            )
    return tuple(out)


def input_items(request: JobRequest, principal: Principal, folders: Folders) -> list[Any] | None:
    """The batch items of a request: its ``inputs``, or one per input-folder file."""
    if request.inputs is not None and request.inputs_from_folder:
        raise errors.InvalidInput("give inputs or inputs_from_folder, not both", field="inputs")
    if request.inputs_from_folder and request.input_folder is not None:
        return [
            {"path": f"input/{f.path}", "size": f.size}
            for f in folders.files(principal, request.input_folder)
        ]
    return list(request.inputs) if request.inputs is not None else None
