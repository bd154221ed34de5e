"""SDK methods for models, model versions and environments."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import posixpath
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from enum import Enum
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from pydantic import BaseModel

from jobyard.sdk.base import BaseClient
from jobyard.sdk.errors import APIError
from jobyard.sdk.models import Environment, InputRole, Model, ModelVersion, OutputRole

#: directories left out when a directory is zipped by :meth:`RegistryMixin.push_version`
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".venv"})
_FLAGS = {"required": True, "optional": False}
_CHUNK = 1024 * 1024


class _Unset(Enum):
    UNSET = 0


#: "leave this field as it is" in the ``update_*`` methods (None clears a field)
UNSET = _Unset.UNSET


class _Models(BaseModel):
    items: list[Model]


class _Versions(BaseModel):
    items: list[ModelVersion]


class _Environments(BaseModel):
    items: list[Environment]


# ---- pure helpers ----------------------------------------------------------------------
def _split_role(text: str, names: tuple[str, ...]) -> tuple[dict[str, Any], bool | None]:
    parts = text.strip().split(":")
    flag = None
    if len(parts) > 1 and parts[-1].strip().lower() in _FLAGS:
        flag = _FLAGS[parts.pop().strip().lower()]
    if not parts[0].strip():
        raise ValueError(f"role {text!r} has no name")
    if len(parts) > len(names):
        syntax = "ROLE" + "".join(f"[:{n.upper()}" for n in names[1:]) + "]" * (len(names) - 1)
        raise ValueError(f"role {text!r} must look like {syntax}[:required|optional]")
    values = {n: (p.strip() or None) for n, p in zip(names, parts, strict=False)}
    return values, flag


def parse_input_role(text: str) -> InputRole:
    """``ROLE[:KIND[:METRIC]][:required|optional]`` (required by default), e.g.
    ``customers:csv:required``. Raises ValueError."""
    values, flag = _split_role(text, ("role", "kind", "metric"))
    return InputRole(**values, required=True if flag is None else flag)


def parse_output_role(text: str) -> OutputRole:
    """``ROLE[:METRIC[:UNIT]][:required|optional]`` (optional by default), e.g.
    ``prediction:celsius:°C:required``. Raises ValueError."""
    values, flag = _split_role(text, ("role", "metric", "unit"))
    return OutputRole(**values, required=False if flag is None else flag)


def infer_kind(name: str | None) -> str:
    """The kind a file name suggests: ``.ipynb`` notebook, ``.zpln``/``note.json``
    zeppelin, ``.py`` python, anything else command."""
    base = posixpath.basename((name or "").replace("\\", "/")).lower()
    if base.endswith(".ipynb"):
        return "notebook"
    if base.endswith(".zpln") or base == "note.json":
        return "zeppelin"
    if base.endswith(".py"):
        return "python"
    return "command"


def zip_directory(directory: Path, out: IO[bytes]) -> int:
    """Zip the files below ``directory`` (paths relative to it, ``SKIPPED_DIRS`` left
    out, symlinked directories not entered) into ``out``; returns the file count."""
    count = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            for name in sorted(filenames):
                file = Path(dirpath, name)
                if file.is_file():
                    zf.write(file, file.relative_to(directory).as_posix())
                    count += 1
    return count


def _roles(items: Iterable[Any], parse: Any, model: type[BaseModel]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if isinstance(item, str):
            item = parse(item)
        elif isinstance(item, Mapping):
            item = model.model_validate(dict(item))
        out.append(item.model_dump(exclude_none=True))
    return out


def _model_path(ref: str, suffix: str = "") -> str:
    return f"/v1/models/{quote(str(ref), safe='')}{suffix}"


def _version_path(ref: str, version: str, suffix: str = "") -> str:
    return _model_path(ref, f"/versions/{quote(str(version), safe='')}{suffix}")


def _env_path(ref: str) -> str:
    return f"/v1/environments/{quote(str(ref), safe='')}"


def _changes(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not UNSET}


def _files(files: Mapping[str, str | os.PathLike[str]]) -> dict[str, str]:
    """Environment files: text as is, a ``Path`` is read (UTF-8)."""
    return {
        path: Path(v).read_text(encoding="utf-8") if isinstance(v, os.PathLike) else v
        for path, v in files.items()
    }


class RegistryMixin(BaseClient):
    """Models, model versions and environments."""

    # ---- models --------------------------------------------------------------------
    def create_model(
        self,
        name: str,
        *,
        description: str | None = None,
        expected_interval_minutes: int | None = None,
        retention_hours: int | None = None,
    ) -> Model:
        """Register a model (409 :class:`Conflict` when the name is taken)."""
        body = {
            "name": name,
            "description": description,
            "expected_interval_minutes": expected_interval_minutes,
            "retention_hours": retention_hours,
        }
        return self._parse(Model, self._request("POST", "/v1/models", json=body))

    def models(self) -> builtins.list[Model]:
        """Every model, by name (without their versions: see :meth:`model`)."""
        return self._parse(_Models, self._request("GET", "/v1/models")).items

    def model(self, ref: str) -> Model:
        """A model by name or id, with its versions (newest first)."""
        return self._parse(Model, self._request("GET", _model_path(ref)))

    def update_model(
        self,
        ref: str,
        *,
        description: str | _Unset | None = UNSET,
        expected_interval_minutes: int | _Unset | None = UNSET,
        retention_hours: int | _Unset | None = UNSET,
    ) -> Model:
        """Change a model's metadata; ``None`` clears a field, omitted ones stay."""
        body = _changes(
            description=description,
            expected_interval_minutes=expected_interval_minutes,
            retention_hours=retention_hours,
        )
        return self._parse(Model, self._request("PATCH", _model_path(ref), json=body))

    def delete_model(self, ref: str) -> None:
        """Delete a model and its versions (409 while a job references one of them)."""
        self._request("DELETE", _model_path(ref))

    # ---- versions ------------------------------------------------------------------
    def push_version(
        self,
        model_ref: str,
        version: str,
        path: str | os.PathLike[str] | None = None,
        *,
        kind: str | None = None,
        entrypoint: str | None = None,
        input_roles: Iterable[str | Mapping[str, Any] | InputRole] = (),
        output_roles: Iterable[str | Mapping[str, Any] | OutputRole] = (),
        parameters_schema: Mapping[str, Any] | None = None,
        default_parameters: Mapping[str, Any] | None = None,
        default_environment: str | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Create an immutable version of a model.

        ``path`` is the artifact: a file (``.py``, ``.ipynb``, ``.zpln``/``note.json`` or
        any file for a command) or a directory, sent as a zip (``entrypoint`` is then a
        path inside it). ``kind`` defaults to what the file name (for a directory: the
        entrypoint) suggests. Roles are objects or strings like ``customers:csv:required``
        (inputs) and ``scores:probability`` (outputs). Pushing an existing version is a
        409 :class:`Conflict`: versions never change.
        """
        spec: dict[str, Any] = {
            "version": version,
            "entrypoint": entrypoint,
            "description": description,
            "input_roles": _roles(input_roles, parse_input_role, InputRole),
            "output_roles": _roles(output_roles, parse_output_role, OutputRole),
            "parameters_schema": dict(parameters_schema) if parameters_schema else None,
            "default_parameters": dict(default_parameters or {}),
            "default_environment": default_environment,
        }
        url = _model_path(model_ref, "/versions")
        if path is None:
            spec["kind"] = kind or "command"
            body = {k: v for k, v in spec.items() if v is not None}
            return self._parse(ModelVersion, self._request("POST", url, json=body))
        local = Path(path)
        with ExitStack() as stack:
            upload: IO[bytes]
            if local.is_dir():
                upload = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=8 * _CHUNK))
                zip_directory(local, upload)
                upload.seek(0)
                name, archive = f"{local.resolve().name or 'artifact'}.zip", True
                spec["kind"] = kind or (infer_kind(entrypoint) if entrypoint else "command")
            elif local.is_file():
                upload = stack.enter_context(local.open("rb"))
                name, archive = local.name, False
                spec["kind"] = kind or infer_kind(local.name)
            else:
                raise FileNotFoundError(f"no such file or directory: {local}")
            resp = self._request(
                "POST",
                url,
                data={
                    "spec": json.dumps({k: v for k, v in spec.items() if v is not None}),
                    "archive": "true" if archive else "false",
                },
                files={"artifact": (name, upload, "application/octet-stream")},
            )
        return self._parse(ModelVersion, resp)

    def versions(self, model_ref: str) -> builtins.list[ModelVersion]:
        """A model's versions, newest first."""
        resp = self._request("GET", _model_path(model_ref, "/versions"))
        return self._parse(_Versions, resp).items

    def version(self, model_ref: str, version: str) -> ModelVersion:
        """One version of a model."""
        return self._parse(ModelVersion, self._request("GET", _version_path(model_ref, version)))

    def deprecate_version(
        self, model_ref: str, version: str, *, deprecated: bool = True
    ) -> ModelVersion:
        """Deprecate a version (``deprecated=False`` takes it back). A deprecated version
        still runs when named as ``NAME:VERSION``; ``NAME`` alone no longer picks it."""
        resp = self._request(
            "POST",
            _version_path(model_ref, version, "/deprecate"),
            json={"deprecated": deprecated},
        )
        return self._parse(ModelVersion, resp)

    def delete_version(self, model_ref: str, version: str) -> None:
        """Delete a version (409 while a job references it: deprecate it instead)."""
        self._request("DELETE", _version_path(model_ref, version))

    def download_artifact(self, model_ref: str, version: str, dest: str | os.PathLike[str]) -> Path:
        """Download a version's artifact to ``dest`` (a file, or a directory to put it in
        under its original name) and check its sha256; returns the file's path."""
        target = Path(dest)
        if target.is_dir():
            found = self.version(model_ref, version)
            target = target / (found.artifact.name if found.artifact else "artifact")
        url = _version_path(model_ref, version, "/artifact")
        tmp = target.with_name(f".{target.name}.part")
        digest = hashlib.sha256()
        try:
            with self._stream("GET", url) as resp:
                expected = resp.headers.get("X-Content-SHA256")
                with tmp.open("wb") as f:
                    for chunk in resp.iter_bytes(_CHUNK):
                        digest.update(chunk)
                        f.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if expected and digest.hexdigest() != expected:
            tmp.unlink(missing_ok=True)
            raise APIError(
                f"the artifact of {model_ref}:{version} arrived corrupt (sha256 mismatch)",
                code="BAD_RESPONSE",
            )
        tmp.replace(target)
        return target

    # ---- environments --------------------------------------------------------------
    def create_environment(
        self,
        name: str,
        *,
        env_vars: Mapping[str, str] | None = None,
        pip: Iterable[str] | None = None,
        files: Mapping[str, str | os.PathLike[str]] | None = None,
        cpu_slots: int = 1,
        memory_limit_mb: int | None = None,
        max_concurrent_jobs: int = 1,
        description: str | None = None,
        network: str = "full",
    ) -> Environment:
        """Create an environment configuration. ``pip`` holds requirement specifiers
        (``"pandas==2.*"``); ``files`` maps relative paths to text (a ``Path`` value is
        read) written into each job's working directory. ``network="none"`` gives its
        jobs a loopback interface only (``"full"``: the host's network)."""
        body = {
            "name": name,
            "description": description,
            "env_vars": dict(env_vars or {}),
            "pip_requirements": list(pip or ()),
            "files": _files(files or {}),
            "cpu_slots": cpu_slots,
            "memory_limit_mb": memory_limit_mb,
            "max_concurrent_jobs": max_concurrent_jobs,
            "network": network,
        }
        return self._parse(Environment, self._request("POST", "/v1/environments", json=body))

    def environments(self) -> builtins.list[Environment]:
        """Every environment, by name."""
        return self._parse(_Environments, self._request("GET", "/v1/environments")).items

    def environment(self, ref: str) -> Environment:
        """An environment by name or id."""
        return self._parse(Environment, self._request("GET", _env_path(ref)))

    def update_environment(
        self,
        ref: str,
        *,
        name: str | _Unset = UNSET,
        description: str | _Unset | None = UNSET,
        env_vars: Mapping[str, str] | _Unset = UNSET,
        pip: Iterable[str] | _Unset = UNSET,
        files: Mapping[str, str | os.PathLike[str]] | _Unset = UNSET,
        cpu_slots: int | _Unset = UNSET,
        memory_limit_mb: int | _Unset | None = UNSET,
        max_concurrent_jobs: int | _Unset = UNSET,
        network: str | _Unset = UNSET,
    ) -> Environment:
        """Change the given fields (maps and lists are replaced whole; ``None`` clears
        ``description``/``memory_limit_mb``). Jobs that start afterwards get the change."""
        body = _changes(
            name=name,
            description=description,
            env_vars=dict(env_vars) if not isinstance(env_vars, _Unset) else UNSET,
            pip_requirements=list(pip) if not isinstance(pip, _Unset) else UNSET,
            files=_files(files) if not isinstance(files, _Unset) else UNSET,
            cpu_slots=cpu_slots,
            memory_limit_mb=memory_limit_mb,
            max_concurrent_jobs=max_concurrent_jobs,
            network=network,
        )
        return self._parse(Environment, self._request("PATCH", _env_path(ref), json=body))

    def delete_environment(self, ref: str) -> None:
        """Delete an environment (409 while jobs that have not ended use it)."""
        self._request("DELETE", _env_path(ref))
