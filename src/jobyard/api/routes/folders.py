"""``/v1/folders``: folders and their files (raw and multipart uploads, streamed downloads)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import IO
from urllib.parse import quote

import anyio.from_thread
from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.datastructures import FormData, UploadFile

from jobyard import errors
from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS, error_responses
from jobyard.api.schemas.folders import (
    FileItems,
    FileList,
    FileOut,
    FolderCreate,
    FolderList,
    FolderOut,
)
from jobyard.service.folders import FolderSummary
from jobyard.storage.fs import CHUNK

MAX_FORM_FILES = 1000

router = APIRouter(
    prefix="/v1/folders",
    tags=["folders"],
    responses={**ERRORS, **error_responses(413)},
)


# ---- folders -----------------------------------------------------------------------
@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a folder")
def create_folder(body: FolderCreate, services: ServicesDep, principal: PrincipalDep) -> FolderOut:
    folder = services.folders.create(principal, body.name, body.description)
    return FolderOut.of(FolderSummary(folder, 0, 0))


@router.get("", summary="List folders by name")
def list_folders(services: ServicesDep, principal: PrincipalDep) -> FolderList:
    return FolderList(items=[FolderOut.of(s) for s in services.folders.list(principal)])


@router.get("/{ref}", summary="Get a folder (by id or name)")
def get_folder(ref: str, services: ServicesDep, principal: PrincipalDep) -> FolderOut:
    return FolderOut.of(services.folders.describe(principal, ref))


@router.delete(
    "/{ref}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a folder and its files (409 while unfinished jobs use it)",
)
def delete_folder(ref: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    services.folders.delete(principal, ref)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- files -------------------------------------------------------------------------
@router.get("/{ref}/files", summary="List a folder's files by path")
def list_files(ref: str, services: ServicesDep, principal: PrincipalDep) -> FileList:
    files = services.folders.files(principal, ref)
    return FileList(items=[FileOut.of(f) for f in files], total_bytes=sum(f.size for f in files))


def _blocking(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The request body as a plain iterator for a worker thread: each chunk is awaited
    on the event loop when the consumer asks for it, so nothing is buffered."""

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        if chunk:
            yield chunk


@router.put(
    "/{ref}/files/{path:path}",
    status_code=status.HTTP_201_CREATED,
    summary="Upload one file (the raw request body), replacing it if it exists",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def put_file(
    ref: str, path: str, request: Request, services: ServicesDep, principal: PrincipalDep
) -> FileOut:
    upload = services.folders.upload
    chunks = _blocking(request.stream())
    return FileOut.of(await run_in_threadpool(upload, principal, ref, path, chunks))


def _file_chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def _form_uploads(form: FormData) -> tuple[list[tuple[str, Iterator[bytes]]], str | None]:
    """``[(name, chunks)]`` and the prefix of a multipart upload."""
    parts = [p for p in form.getlist("files") if isinstance(p, UploadFile) and p.filename]
    if not parts or len(parts) != len(form.getlist("files")):
        raise errors.InvalidInput("send one or more file parts named 'files'", field="files")
    path, prefix = form.get("path"), form.get("prefix")
    if not isinstance(path, str | None) or not isinstance(prefix, str | None):
        raise errors.InvalidInput("path and prefix must be text fields", field="path")
    if path is not None and len(parts) != 1:
        raise errors.InvalidInput("path can only be given with a single file", field="path")
    names = [path] if path is not None else [str(p.filename) for p in parts]
    return [(n, _file_chunks(p.file)) for n, p in zip(names, parts, strict=True)], prefix


@router.post(
    "/{ref}/files",
    status_code=status.HTTP_201_CREATED,
    summary="Upload files (multipart/form-data: parts 'files', optional 'path' and 'prefix')",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                            "path": {"type": "string"},
                            "prefix": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def post_files(
    ref: str, request: Request, services: ServicesDep, principal: PrincipalDep
) -> FileItems:
    # the key and the folder are checked before the body is read
    await run_in_threadpool(services.folders.get, principal, ref)
    async with request.form(max_files=MAX_FORM_FILES, max_fields=10) as form:
        uploads, prefix = _form_uploads(form)
        stored = await run_in_threadpool(
            services.folders.upload_many, principal, ref, uploads, prefix
        )
    return FileItems(items=[FileOut.of(f) for f in stored])


def _disposition(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    quoted = quote(name)
    if quoted == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename*=utf-8''{quoted}"


@router.get(
    "/{ref}/files/{path:path}",
    summary="Download a file",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file"}},
)
def get_file(ref: str, path: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    file, chunks = services.folders.open_file(principal, ref, path)
    headers = {
        "Content-Disposition": _disposition(file.path),
        "Content-Length": str(file.size),
        "X-Content-SHA256": file.sha256,
    }
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.delete(
    "/{ref}/files/{path:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a file",
)
def delete_file(ref: str, path: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    services.folders.delete_file(principal, ref, path)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
