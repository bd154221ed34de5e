"""`/v1/models`: models, their immutable versions and the versions' artifacts."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

from fastapi import APIRouter, Body, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS
from jobyard.api.schemas.registry import (
    DeprecateRequest,
    ModelCreate,
    ModelDetail,
    ModelList,
    ModelOut,
    ModelUpdate,
    VersionCreate,
    VersionList,
    VersionOut,
)
from jobyard.service.model_specs import ArtifactUpload

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERRORS)

CHUNK = 1024 * 1024
#: a version's JSON (the body, or the ``spec`` field) is at most this large
MAX_SPEC_BYTES = 1024 * 1024
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


# ---- models --------------------------------------------------------------------------
@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a model")
def create_model(body: ModelCreate, services: ServicesDep, principal: PrincipalDep) -> ModelOut:
    model = services.registry.create_model(
        principal,
        body.name,
        description=body.description,
        expected_interval_minutes=body.expected_interval_minutes,
        retention_hours=body.retention_hours,
    )
    return ModelOut.of(model)


@router.get("", summary="List models by name")
def list_models(services: ServicesDep, principal: PrincipalDep) -> ModelList:
    return ModelList(items=[ModelOut.of(m) for m in services.registry.list_models(principal)])


@router.get("/{ref}", summary="Get a model (by id or name) with its versions")
def get_model(ref: str, services: ServicesDep, principal: PrincipalDep) -> ModelDetail:
    model = services.registry.get_model(principal, ref)
    versions = services.registry.list_versions(principal, model.id)
    return ModelDetail.with_versions(model, versions)


@router.patch("/{ref}", summary="Change a model's metadata (versions never change)")
def update_model(
    ref: str, body: ModelUpdate, services: ServicesDep, principal: PrincipalDep
) -> ModelOut:
    changes = body.model_dump(exclude_unset=True)
    return ModelOut.of(services.registry.update_model(principal, ref, **changes))


@router.delete(
    "/{ref}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a model and its versions (409 while a job references one)",
)
def delete_model(ref: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    services.registry.delete_model(principal, ref)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- versions ------------------------------------------------------------------------
def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` inlined (OpenAPI resolves ``$ref`` from its root)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


_VERSION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline_refs(VersionCreate.model_json_schema())},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "spec": {
                            "type": "string",
                            "description": "The version as JSON (the application/json body).",
                        },
                        "artifact": {
                            "type": "string",
                            "format": "binary",
                            "description": "The model file (.py, .ipynb, .zpln, note.json, "
                            "any file for a command), or a zip of a directory.",
                        },
                        "archive": {
                            "type": "boolean",
                            "default": False,
                            "description": "true: the artifact is a zip of a directory.",
                        },
                    },
                }
            },
        },
    }
}


def _invalid(loc: tuple[str, ...], message: str, kind: str = "value_error") -> NoReturn:
    raise RequestValidationError([{"loc": loc, "msg": message, "type": kind}])


def _version_create(data: object, where: str) -> VersionCreate:
    try:
        return VersionCreate.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError(
            [
                {"loc": (where, *err["loc"]), "msg": err["msg"], "type": err["type"]}
                for err in e.errors(include_url=False)
            ]
        ) from None


def _json(raw: bytes | str, where: str) -> object:
    try:
        return json.loads(raw)
    except ValueError as e:
        _invalid((where,), f"not valid JSON: {e}", "json_invalid")


class _TooLarge(MultiPartException):
    """The body passed its limit (a MultiPartException, so the parser cleans up)."""


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The request body, stopped once it passes ``limit`` bytes (the app's 1 MiB guard
    does not apply to uploads, and chunked bodies carry no length)."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _TooLarge(f"the request body is larger than the limit of {limit} bytes")
        yield chunk


def _refused(e: MultiPartException) -> StarletteHTTPException:
    return StarletteHTTPException(413 if isinstance(e, _TooLarge) else 400, e.message)


def _chunks(upload: UploadFile) -> Iterator[bytes]:
    upload.file.seek(0)
    while chunk := upload.file.read(CHUNK):
        yield chunk


@router.post(
    "/{ref}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=VersionOut,
    summary="Create an immutable model version (JSON, or multipart with an artifact)",
    description="Send `application/json` (the version, no artifact) or "
    "`multipart/form-data` with a `spec` field holding the same JSON, an optional "
    "`artifact` file and `archive=true` when the file is a zip of a directory. "
    "A version that exists already is 409: versions are never changed.",
    openapi_extra=_VERSION_BODY,
)
async def create_version(
    ref: str, request: Request, services: ServicesDep, principal: PrincipalDep
) -> VersionOut:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            raw = b"".join([c async for c in _limited(request, MAX_SPEC_BYTES)])
        except _TooLarge as e:
            raise _refused(e) from None
        spec = _version_create(_json(raw, "body"), "body")
        version = await run_in_threadpool(
            services.registry.create_version, principal, ref, spec.to_spec(), None
        )
        return VersionOut.of(version)
    if ctype != "multipart/form-data":
        raise StarletteHTTPException(
            415, "send application/json or multipart/form-data (spec, artifact, archive)"
        )
    limit = services.registry.max_upload_bytes + MAX_SPEC_BYTES
    parser = MultiPartParser(request.headers, _limited(request, limit), max_files=1, max_fields=3)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise _refused(e) from None
    try:
        unknown = sorted(set(form.keys()) - {"spec", "artifact", "archive"})
        if unknown:
            _invalid((unknown[0],), "unknown form field (expected spec, artifact, archive)")
        raw_spec = form.get("spec")
        if not isinstance(raw_spec, str):
            _invalid(("spec",), "a text field with the version as JSON is required", "missing")
        spec = _version_create(_json(raw_spec, "spec"), "spec")
        archive_text = form.get("archive", "false")
        archive = str(archive_text).strip().lower()
        if not isinstance(archive_text, str) or archive not in _TRUE | _FALSE:
            _invalid(("archive",), "must be true or false", "bool_parsing")
        upload = form.get("artifact")
        artifact = None
        if upload is not None:
            if not isinstance(upload, UploadFile):
                _invalid(("artifact",), "must be a file part")
            artifact = ArtifactUpload(
                filename=upload.filename or "",
                chunks=_chunks(upload),
                is_archive=archive in _TRUE,
            )
        version = await run_in_threadpool(
            services.registry.create_version, principal, ref, spec.to_spec(), artifact
        )
    finally:
        await form.close()
    return VersionOut.of(version)


@router.get("/{ref}/versions", summary="List a model's versions, newest first")
def list_versions(ref: str, services: ServicesDep, principal: PrincipalDep) -> VersionList:
    versions = services.registry.list_versions(principal, ref)
    return VersionList(items=[VersionOut.of(v) for v in versions])


@router.get("/{ref}/versions/{version}", summary="Get a model version")
def get_version(
    ref: str, version: str, services: ServicesDep, principal: PrincipalDep
) -> VersionOut:
    return VersionOut.of(services.registry.get_version(principal, ref, version))


@router.post(
    "/{ref}/versions/{version}/deprecate",
    summary="Deprecate a version: still runnable by NAME:VERSION, no longer the default",
)
def deprecate_version(
    ref: str,
    version: str,
    services: ServicesDep,
    principal: PrincipalDep,
    body: Annotated[DeprecateRequest | None, Body()] = None,
) -> VersionOut:
    deprecated = (body or DeprecateRequest()).deprecated
    return VersionOut.of(services.registry.deprecate_version(principal, ref, version, deprecated))


@router.delete(
    "/{ref}/versions/{version}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a version (409 while a job references it)",
)
def delete_version(
    ref: str, version: str, services: ServicesDep, principal: PrincipalDep
) -> Response:
    services.registry.delete_version(principal, ref, version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _disposition(name: str) -> str:
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get(
    "/{ref}/versions/{version}/artifact",
    summary="Download a version's artifact",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {}, "application/zip": {}},
            "description": "The artifact's bytes; `X-Content-SHA256` is their sha256.",
        }
    },
)
def download_artifact(
    ref: str, version: str, services: ServicesDep, principal: PrincipalDep
) -> StreamingResponse:
    found, chunks = services.registry.open_artifact(principal, ref, version)
    headers = {
        "X-Content-SHA256": found.artifact_sha256 or "",
        "Content-Length": str(found.artifact_size or 0),
        "Content-Disposition": _disposition(found.artifact_name or "artifact"),
    }
    media = "application/zip" if found.artifact_is_archive else "application/octet-stream"
    return StreamingResponse(chunks, media_type=media, headers=headers)
