"""Models, environments, folders (browse, upload, download) and job definitions."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from jobyard import errors
from jobyard.domain.jobs import JobFilter
from jobyard.web.base import PREFIX, UserDep, WebRoute, WriterDep, page, see_other
from jobyard.web.forms import text

router = APIRouter(prefix=PREFIX, route_class=WebRoute, include_in_schema=False)
UPLOAD_CHUNK = 1024 * 1024


@router.get("/models")
def models_page(request: Request, user: UserDep) -> Response:
    registry = user.services.registry
    models = [
        (m, registry.list_versions(user.principal, m.id))
        for m in registry.list_models(user.principal)
    ]
    return page(request, "models.html", user, {"models": models})


@router.get("/models/{name}")
def model_page(request: Request, user: UserDep, name: str) -> Response:
    registry = user.services.registry
    model = registry.get_model(user.principal, name)
    versions = registry.list_versions(user.principal, model.id)
    ids = frozenset(v.id for v in versions)
    jobs = (
        user.services.jobs.list_jobs(
            user.principal, JobFilter(model_version_ids=ids), limit=20
        ).items
        if ids
        else []
    )
    return page(request, "model.html", user, {"model": model, "versions": versions, "jobs": jobs})


@router.get("/environments")
def environments_page(request: Request, user: UserDep) -> Response:
    envs = user.services.registry.list_environments(user.principal)
    return page(request, "environments.html", user, {"environments": envs})


@router.get("/folders")
def folders_page(request: Request, user: UserDep) -> Response:
    folders = user.services.folders.list(user.principal)
    return page(request, "folders.html", user, {"folders": folders, "error": None})


@router.post("/folders")
async def create_folder(request: Request, user: WriterDep) -> Response:
    form = await request.form()
    name = text(form, "name")
    try:
        folder = await run_in_threadpool(
            user.services.folders.create, user.principal, name, text(form, "description") or None
        )
    except errors.InvalidInput as e:
        folders = await run_in_threadpool(user.services.folders.list, user.principal)
        return page(request, "folders.html", user, {"folders": folders, "error": e.message}, 422)
    return see_other(f"{PREFIX}/folders/{folder.name}")


@router.get("/folders/{name}")
def folder_page(request: Request, user: UserDep, name: str) -> Response:
    summary = user.services.folders.describe(user.principal, name)
    files = user.services.folders.files(user.principal, name)
    return page(request, "folder.html", user, {"s": summary, "files": files, "error": None})


def _chunks(upload: UploadFile) -> Iterator[bytes]:
    while True:
        piece = upload.file.read(UPLOAD_CHUNK)
        if not piece:
            return
        yield piece


@router.post("/folders/{name}/upload")
async def upload(request: Request, user: WriterDep, name: str) -> Response:
    form = await request.form()
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    prefix = text(form, "prefix") or None
    uploads = [(f.filename or "file", _chunks(f)) for f in files]
    folders = user.services.folders
    try:
        await run_in_threadpool(folders.upload_many, user.principal, name, uploads, prefix)
    except errors.InvalidInput as e:
        summary = await run_in_threadpool(folders.describe, user.principal, name)
        listing = await run_in_threadpool(folders.files, user.principal, name)
        return page(
            request, "folder.html", user, {"s": summary, "files": listing, "error": e.message}, 422
        )
    return see_other(f"{PREFIX}/folders/{name}")


@router.get("/folders/{name}/files/{path:path}")
def download(user: UserDep, name: str, path: str) -> StreamingResponse:
    file, chunks = user.services.folders.open_file(user.principal, name, path)
    filename = file.path.rsplit("/", 1)[-1].replace('"', "")
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": str(file.size),
        },
    )


@router.get("/definitions")
def definitions_page(request: Request, user: UserDep) -> Response:
    found = user.services.definitions.list_definitions(user.principal)
    return page(request, "definitions.html", user, {"definitions": found})


@router.post("/definitions/{def_id}/run")
async def run_definition(request: Request, user: WriterDep, def_id: str) -> Response:
    job = await run_in_threadpool(user.services.definitions.run_now, user.principal, def_id)
    return see_other(f"{PREFIX}/jobs/{job.id}")
