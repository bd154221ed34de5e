"""Environment configuration use cases (part of :class:`RegistryService`).

An environment is mutable: a job keeps the environment id it was submitted with and
gets the environment as it is when the job starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from jobyard import errors
from jobyard.clock import Clock
from jobyard.domain.auth import Principal
from jobyard.domain.registry import Environment
from jobyard.service import model_specs as specs
from jobyard.storage.fs import safe_relpath
from jobyard.store.jobs import JobStore
from jobyard.store.registry import RegistryStore, new_id

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_PREFIX = "JOBYARD_"
#: a PEP 508 project name followed by the end, extras, a version, markers or ``@ url``
REQUIREMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\s*(?:[\[(<>=!~;@].*)?")
MAX_FILES_BYTES = 1024 * 1024
MAX_ITEMS = 500
MAX_VALUE = 32 * 1024
#: an environment's network policies: the host's network, or a loopback interface only
NETWORK_POLICIES = ("full", "none")


@dataclass(frozen=True, kw_only=True)
class EnvironmentSpec:
    """What a client asks for when it creates (or, merged, updates) an environment."""

    name: str
    description: str | None = None
    env_vars: Mapping[str, str] = field(default_factory=dict)
    pip_requirements: Sequence[str] = ()
    files: Mapping[str, str] = field(default_factory=dict)  #: relative path → text
    cpu_slots: int = 1
    memory_limit_mb: int | None = None
    max_concurrent_jobs: int = 1
    network: str = "full"


CHANGEABLE = tuple(f.name for f in fields(EnvironmentSpec))


class EnvironmentUseCases:
    """Environment configurations: env vars, pip requirements, files, resources."""

    store: RegistryStore
    jobs: JobStore
    clock: Clock

    def create_environment(self, principal: Principal, spec: EnvironmentSpec) -> Environment:
        now = self.clock.now()
        env = Environment(
            id=new_id(),
            tenant_id=principal.tenant_id,
            created_at=now,
            updated_at=now,
            **_checked(spec),
        )
        return self.store.insert_environment(env, principal.project_id)

    def get_environment(self, principal: Principal, ref: str) -> Environment:
        """The caller's environment with this id or name, or NotFound."""
        env = self.store.find_environment(principal.tenant_id, ref, principal.project_id)
        if env is None:
            raise errors.NotFound(f"environment {ref} does not exist", kind="environment", id=ref)
        return env

    def list_environments(self, principal: Principal) -> list[Environment]:
        """The caller's environments by name."""
        return self.store.list_environments(principal.tenant_id, principal.project_id)

    def update_environment(self, principal: Principal, ref: str, **changes: Any) -> Environment:
        """Replace the given fields (a map or list is replaced whole). Jobs that start
        afterwards get the new configuration, including jobs already queued."""
        env = self.get_environment(principal, ref)
        for key in changes:
            if key not in CHANGEABLE:
                raise errors.InvalidInput(
                    f"{key}: cannot be changed (changeable: {', '.join(CHANGEABLE)})", field=key
                )
        current = EnvironmentSpec(**{k: getattr(env, k) for k in CHANGEABLE})
        merged = replace(current, **changes)
        updated = replace(env, updated_at=self.clock.now(), **_checked(merged))
        return self.store.update_environment(updated)

    def delete_environment(self, principal: Principal, ref: str) -> None:
        """Delete; Conflict while jobs that have not ended use it."""
        env = self.get_environment(principal, ref)
        busy = self.jobs.count_unfinished_using(principal.tenant_id, environment_id=env.id)
        if busy:
            raise errors.Conflict(
                f"environment {env.name} is used by {busy} unfinished job(s);"
                " wait until they end or cancel them",
                kind="environment",
                jobs=busy,
            )
        self.store.delete_environment(principal.tenant_id, env.id)


def _checked(spec: EnvironmentSpec) -> dict[str, Any]:
    """The validated, normalised fields of an environment."""
    return {
        "name": specs.check_name(spec.name, "environment"),
        "description": specs.check_text(spec.description, "description"),
        "env_vars": _env_vars(spec.env_vars),
        "pip_requirements": _requirements(spec.pip_requirements),
        "files": _files(spec.files),
        "cpu_slots": specs.check_int(
            spec.cpu_slots, "cpu_slots", minimum=1, maximum=1024, optional=False
        ),
        "memory_limit_mb": specs.check_int(spec.memory_limit_mb, "memory_limit_mb", minimum=16),
        "max_concurrent_jobs": specs.check_int(
            spec.max_concurrent_jobs, "max_concurrent_jobs", minimum=1, optional=False
        ),
        "network": _network(spec.network),
    }


def _network(value: object) -> str:
    if value not in NETWORK_POLICIES:
        raise errors.ValidationFailed("network: must be 'full' or 'none'", field="network")
    return str(value)


def _mapping(value: object, what: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping) or len(value) > MAX_ITEMS:
        raise errors.InvalidInput(
            f"{what}: must be an object of at most {MAX_ITEMS} entries", field=what
        )
    return value


def _env_vars(value: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, text in _mapping(value, "env_vars").items():
        where = f"env_vars.{name}"
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise errors.InvalidInput(
                f"{where}: {name!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)", field=where
            )
        if name.upper().startswith(RESERVED_PREFIX):
            raise errors.InvalidInput(
                f"{where}: names starting with {RESERVED_PREFIX} are reserved for jobyard",
                field=where,
            )
        if not isinstance(text, str) or "\0" in text or len(text) > MAX_VALUE:
            raise errors.InvalidInput(
                f"{where}: the value must be text of at most {MAX_VALUE} characters without NUL",
                field=where,
            )
        out[name] = text
    return out


def _requirements(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) > MAX_ITEMS:
        raise errors.InvalidInput(
            f"pip_requirements: must be a list of at most {MAX_ITEMS} requirements",
            field="pip_requirements",
        )
    out: list[str] = []
    for i, item in enumerate(value):
        where = f"pip_requirements[{i}]"
        text = item.strip() if isinstance(item, str) else ""
        if not text:
            raise errors.InvalidInput(f"{where}: must be a non-empty string", field=where)
        if (
            len(text) > 1000
            or any(c in text for c in "\r\n\0#")
            or re.search(r"(^|\s)-", text)
            or not REQUIREMENT.fullmatch(text)
        ):
            raise errors.InvalidInput(
                f"{where}: {text!r} is not a requirement specifier (like 'pandas==2.*' or"
                " 'requests[socks]>=2'); pip options such as -e, -r or --index-url are not"
                " allowed",
                field=where,
            )
        out.append(text)
    return tuple(out)


def _files(value: object) -> dict[str, str]:
    out: dict[str, str] = {}
    total = 0
    for path, text in _mapping(value, "files").items():
        where = f"files.{path}"
        rel = safe_relpath(path if isinstance(path, str) else "", where)
        if not isinstance(text, str):
            raise errors.InvalidInput(f"{where}: the content must be text", field=where)
        if rel in out:
            raise errors.InvalidInput(f"{where}: the path {rel!r} is given twice", field=where)
        total += len(text.encode("utf-8"))
        out[rel] = text
    if total > MAX_FILES_BYTES:
        raise errors.InvalidInput(
            f"files: {total} bytes in all, over the limit of {MAX_FILES_BYTES}", field="files"
        )
    return out
