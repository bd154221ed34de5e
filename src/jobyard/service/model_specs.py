"""What a model version is made of, and the checks that need no database: names,
roles, parameter schemas, and the artifact of each kind."""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from jobyard import errors
from jobyard.domain.registry import InputRole, ModelKind, OutputRole
from jobyard.storage.fs import safe_relpath

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
ROLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
MAX_TEXT = 10_000
MAX_ROLES = 200
MAX_ENTRYPOINT = 100_000
MAX_INT = 2**31 - 1
#: an archive may unpack to at most this many times the upload limit
UNPACK_FACTOR = 10
_CHUNK = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A model as a caller asks for it (see ``RegistryService.new_model``)."""

    name: str
    description: str | None = None
    expected_interval_minutes: int | None = None
    retention_hours: int | None = None


@dataclass(frozen=True, kw_only=True)
class VersionSpec:
    """What a client asks for when it creates a model version (the artifact aside)."""

    version: str
    kind: ModelKind | None = None  #: None: inferred from the artifact (or entrypoint) name
    entrypoint: str | None = None
    description: str | None = None
    input_roles: tuple[InputRole, ...] = ()
    output_roles: tuple[OutputRole, ...] = ()
    parameters_schema: dict[str, Any] | None = None
    default_parameters: dict[str, Any] = field(default_factory=dict)
    default_environment: str | None = None  #: an environment id or name


@dataclass(frozen=True, kw_only=True)
class ArtifactUpload:
    """An uploaded file: a single file, or a zip of a directory (``is_archive``)."""

    filename: str
    chunks: Iterable[bytes]
    is_archive: bool = False


@dataclass(frozen=True)
class CheckedArtifact:
    """A validated artifact, spooled to a temporary file."""

    file: IO[bytes]
    name: str
    entrypoint: str | None

    def chunks(self) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(_CHUNK):
            yield chunk


# ---- names ---------------------------------------------------------------------------
def check_name(name: object, what: str, field_: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise errors.InvalidInput(
            f"{field_}: {what} names are 1 to 200 characters of letters, digits, '.', '_'"
            " and '-', starting with a letter or digit",
            field=field_,
        )
    return name


def check_version_string(version: object, field_: str = "version") -> str:
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise errors.InvalidInput(
            f"{field_}: a version is 1 to 100 characters of letters, digits, '.', '_', '+'"
            " and '-', starting with a letter or digit",
            field=field_,
        )
    return version


def check_text(value: object, field_: str, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise errors.InvalidInput(
            f"{field_}: must be text of at most {limit} characters", field=field_
        )
    return value


def check_int(
    value: object, field_: str, *, minimum: int, maximum: int = MAX_INT, optional: bool = True
) -> int | None:
    """An integer in ``[minimum, maximum]`` (or None when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise errors.InvalidInput(
            f"{field_}: must be an integer from {minimum} to {maximum}"
            + (" or null" if optional else ""),
            field=field_,
        )
    return value


# ---- roles ---------------------------------------------------------------------------
def check_roles(inputs: Sequence[InputRole], outputs: Sequence[OutputRole]) -> None:
    """Role names are unique within a version and look like identifiers."""
    if len(inputs) + len(outputs) > MAX_ROLES:
        raise errors.InvalidInput(f"a version has at most {MAX_ROLES} roles", field="input_roles")
    seen: set[str] = set()
    groups: tuple[tuple[str, Sequence[InputRole | OutputRole]], ...] = (
        ("input_roles", inputs),
        ("output_roles", outputs),
    )
    for where, roles in groups:
        for i, role in enumerate(roles):
            f = f"{where}[{i}]"
            if not ROLE_RE.fullmatch(role.role):
                raise errors.InvalidInput(
                    f"{f}.role: {role.role!r} is not a role name (letters, digits, '_', '.',"
                    " '-'; starting with a letter or '_'; at most 100 characters)",
                    field=f"{f}.role",
                )
            if role.role in seen:
                raise errors.InvalidInput(
                    f"{f}.role: the role {role.role!r} is defined twice", field=f"{f}.role"
                )
            seen.add(role.role)
            for attr in ("kind", "metric", "unit"):
                check_text(getattr(role, attr, None), f"{f}.{attr}", 100)


# ---- parameters ----------------------------------------------------------------------
def _path(prefix: str, parts: Iterable[str | int]) -> str:
    return prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def check_schema(schema: object) -> dict[str, Any]:
    """A valid JSON Schema object, or InvalidInput naming ``parameters_schema``."""
    if not isinstance(schema, dict):
        raise errors.InvalidInput(
            "parameters_schema: must be a JSON Schema object", field="parameters_schema"
        )
    from jsonschema.exceptions import SchemaError  # loaded on first use: keeps the server small
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as e:
        where = _path("parameters_schema", e.absolute_path)
        raise errors.InvalidInput(
            f"parameters_schema is not a valid JSON Schema: {where}: {e.message}",
            field="parameters_schema",
        ) from None
    return schema


def validate_parameters(
    schema: dict[str, Any], values: Mapping[str, Any], prefix: str, *, partial: bool = False
) -> None:
    """Validate ``values`` against ``schema``; InvalidInput names the offending field,
    e.g. ``parameters.threshold: 1.5 is greater than the maximum of 1``. With
    ``partial`` (default parameters) missing top-level properties are not errors."""
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    cls = validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    problems = [
        e
        for e in validator.iter_errors(dict(values))
        if not (
            partial and not e.absolute_path and e.validator in ("required", "dependentRequired")
        )
    ]
    best = best_match(problems)
    if best is None:
        return
    where = _path(prefix, best.absolute_path)
    if best.validator == "required" and isinstance(best.instance, dict):
        required: list[str] = list(best.validator_value)
        missing = [k for k in required if k not in best.instance]
        if missing:
            where = f"{where}.{missing[0]}"
    raise errors.InvalidInput(f"{where}: {best.message}", field=where)


# ---- artifacts -----------------------------------------------------------------------
def infer_kind(name: str | None) -> ModelKind:
    """The kind a file name suggests: .ipynb, .zpln/note.json, .py, else command."""
    base = posixpath.basename((name or "").replace("\\", "/")).lower()
    if base.endswith(".ipynb"):
        return ModelKind.NOTEBOOK
    if base.endswith(".zpln") or base == "note.json":
        return ModelKind.ZEPPELIN
    if base.endswith(".py"):
        return ModelKind.PYTHON
    return ModelKind.COMMAND


def artifact_name(filename: str, is_archive: bool) -> str:
    """The stored name: the base name of what the client sent."""
    base = posixpath.basename((filename or "").replace("\\", "/")).strip()
    base = base or ("artifact.zip" if is_archive else "artifact")
    name = safe_relpath(base, "artifact")
    if len(name) > 255 or name.startswith("."):
        raise errors.InvalidInput(
            f"artifact: the file name {base!r} is not usable (at most 255 characters,"
            " not starting with '.')",
            field="artifact",
        )
    return name


def spool(chunks: Iterable[bytes], limit: int) -> IO[bytes]:
    """Copy the upload to a temporary file; InvalidInput when over ``limit`` bytes."""
    f = tempfile.TemporaryFile()  # closed by the caller
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise errors.InvalidInput(
                    f"artifact: the file is larger than the limit of {limit} bytes",
                    field="artifact",
                )
            f.write(chunk)
    except BaseException:
        f.close()
        raise
    f.seek(0)
    return f


def check_notebook(data: bytes, name: str) -> None:
    import nbformat

    try:
        nbformat.reads(data.decode("utf-8"), as_version=4)  # type: ignore[no-untyped-call]
    except Exception as e:  # nbformat raises many kinds: JSON, schema, type errors
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise errors.InvalidInput(
            f"artifact: {name} is not a valid Jupyter notebook: {message[:300]}",
            field="artifact",
        ) from None


def check_zeppelin(data: bytes, name: str) -> None:
    try:
        note = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise errors.InvalidInput(
            f"artifact: {name} is not a Zeppelin note: not JSON ({e})", field="artifact"
        ) from None
    paragraphs = note.get("paragraphs") if isinstance(note, dict) else None
    if not isinstance(paragraphs, list) or not all(isinstance(p, dict) for p in paragraphs):
        raise errors.InvalidInput(
            f"artifact: {name} is not a Zeppelin note: it needs a 'paragraphs' list of objects",
            field="artifact",
        )


_CONTENT_CHECKS = {ModelKind.NOTEBOOK: check_notebook, ModelKind.ZEPPELIN: check_zeppelin}
_SUFFIXES = {
    ModelKind.PYTHON: (".py",),
    ModelKind.NOTEBOOK: (".ipynb",),
    ModelKind.ZEPPELIN: (".zpln", ".json"),
}


def check_single_file(
    f: IO[bytes], name: str, kind: ModelKind, entrypoint: str | None
) -> str | None:
    """Check a single-file artifact; returns the version's entrypoint."""
    if kind is ModelKind.COMMAND:
        return entrypoint
    suffixes = _SUFFIXES[kind]
    if not name.lower().endswith(suffixes):
        raise errors.InvalidInput(
            f"artifact: a {kind.value} model needs a {' or '.join(suffixes)} file (got {name!r}),"
            " or a zip archive (archive=true) with the entrypoint inside it",
            field="artifact",
        )
    if entrypoint is not None and entrypoint != name:
        raise errors.InvalidInput(
            f"entrypoint: for a single {kind.value} file the entrypoint is the file itself"
            f" ({name!r}); an entrypoint path is for zip archives",
            field="entrypoint",
        )
    check = _CONTENT_CHECKS.get(kind)
    if check is not None:
        f.seek(0)
        check(f.read(), name)
    return name


def check_archive(
    f: IO[bytes], kind: ModelKind, entrypoint: str | None, max_unpacked: int
) -> str | None:
    """Check a zip archive (safe member paths, bounded size, the entrypoint inside it);
    returns the version's entrypoint."""
    f.seek(0)
    if not zipfile.is_zipfile(f):
        raise errors.InvalidInput(
            "artifact: archive=true but the file is not a zip archive", field="artifact"
        )
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        files: set[str] = set()
        total = 0
        for info in zf.infolist():
            member = safe_relpath(info.filename.rstrip("/"), "artifact")
            total += info.file_size
            if not info.is_dir():
                files.add(member)
        if total > max_unpacked:
            raise errors.InvalidInput(
                f"artifact: the archive unpacks to {total} bytes, over the limit of {max_unpacked}",
                field="artifact",
            )
        if kind is ModelKind.COMMAND:
            return entrypoint
        if not entrypoint:
            raise errors.InvalidInput(
                f"entrypoint: a {kind.value} model in a zip archive needs the entrypoint:"
                " the path of the file to run inside the archive",
                field="entrypoint",
            )
        path = safe_relpath(entrypoint, "entrypoint")
        if path not in files:
            raise errors.InvalidInput(
                f"entrypoint: {path!r} is not a file in the archive", field="entrypoint"
            )
        check = _CONTENT_CHECKS.get(kind)
        if check is not None:
            check(zf.read(path), path)
        return path


def check_needs(kind: ModelKind, entrypoint: str | None, *, has_artifact: bool) -> None:
    """A command needs an entrypoint; every other kind needs an artifact."""
    if kind is ModelKind.COMMAND:
        if not entrypoint:
            raise errors.InvalidInput(
                "entrypoint: a command model version needs an entrypoint (a shell command)",
                field="entrypoint",
            )
        return
    if not has_artifact:
        what = {
            ModelKind.PYTHON: "a .py file or a zip archive",
            ModelKind.NOTEBOOK: "an .ipynb notebook or a zip archive",
            ModelKind.ZEPPELIN: "a .zpln/note.json note or a zip archive",
        }[kind]
        raise errors.InvalidInput(
            f"artifact: a {kind.value} model version needs an artifact: {what}", field="artifact"
        )
