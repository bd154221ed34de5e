"""Submit forms: a command job, and a model version's job (its parameters as fields from
the version's JSON Schema, errors next to the field). Both go through the API's own
request model (``JobCreate``) and the same service call as ``POST /v1/jobs``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.datastructures import FormData

from jobyard import errors
from jobyard.api.schemas.jobs import JobCreate
from jobyard.domain.priorities import Priority
from jobyard.domain.registry import ModelVersion
from jobyard.web.base import PREFIX, User, UserDep, WebRoute, WriterDep, page, see_other
from jobyard.web.forms import FieldErrors, field_of, parse_parameters, text

router = APIRouter(prefix=f"{PREFIX}/submit", route_class=WebRoute, include_in_schema=False)
PRIORITIES = [p.value for p in Priority]
SCHEMA_KINDS = {"string", "number", "integer", "boolean"}
ROLE = "role."  #: a form field ``role.<input role>`` names the folder bound to the role


def _common(form: FormData, problems: FieldErrors) -> dict[str, Any]:
    body: dict[str, Any] = {"priority": text(form, "priority") or "normal"}
    for name in ("name", "job_type", "description"):
        if text(form, name):
            body[name] = text(form, name)
    if text(form, "timeout_s"):
        body["timeout_s"] = text(form, "timeout_s")
    when = text(form, "scheduled_at")
    if when:
        offset = text(form, "tz_offset")  # the browser's zone, set by the page's script
        body["scheduled_at"] = when + (offset or "+00:00")
    env: dict[str, str] = {}
    for i, line in enumerate(text(form, "env").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            problems.add("env", f"env line {i}: write NAME=value")
        env[key.strip()] = value
    if env:
        body["env"] = env
    return body


def _submit(user: User, body: dict[str, Any], problems: FieldErrors) -> str | None:
    """The new job's id, or None with the problems by field."""
    try:
        request = JobCreate.model_validate(body).to_request(None)
    except ValidationError as e:
        for err in e.errors():
            loc = [str(p) for p in err["loc"]]
            problems.add(
                ".".join(loc) if loc else "form", f"{'.'.join(loc) or 'form'}: {err['msg']}"
            )
        return None
    try:
        job, _ = user.services.jobs.submit_request(user.principal, request)
    except errors.InvalidInput as e:
        problems.add(field_of(e.details), e.message)
        return None
    return job.id


@router.get("")
def command_form(request: Request, user: UserDep) -> Response:
    return page(
        request,
        "submit.html",
        user,
        {"form": {}, "errors": {}, "priorities": PRIORITIES},
    )


@router.post("")
async def submit_command(request: Request, user: WriterDep) -> Response:
    form = await request.form()
    problems = FieldErrors()
    body = _common(form, problems)
    command = text(form, "entrypoint")
    if not command:
        problems.add("entrypoint", "command: enter the command to run")
    body["entrypoint"] = command
    body["parameters"] = parse_parameters(form, problems)
    job_id = None if problems else await run_in_threadpool(_submit, user, body, problems)
    if job_id is not None:
        return see_other(f"{PREFIX}/jobs/{job_id}")
    return page(
        request,
        "submit.html",
        user,
        {"form": dict(form), "errors": problems.by_field, "priorities": PRIORITIES},
        status_code=422,
    )


def schema_fields(version: ModelVersion) -> list[dict[str, Any]]:
    """One form field per top-level property of the version's parameter schema."""
    schema = version.parameters_schema or {}
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    out = []
    for name, prop in props.items():
        prop = prop if isinstance(prop, dict) else {}
        kind = prop.get("type") if prop.get("type") in SCHEMA_KINDS else "json"
        default = version.default_parameters.get(name, prop.get("default"))
        out.append(
            {
                "name": name,
                "kind": kind,
                "required": name in required,
                "default": "" if default is None else default,
                "description": prop.get("description") or prop.get("title") or "",
                "enum": prop.get("enum"),
                "minimum": prop.get("minimum"),
                "maximum": prop.get("maximum"),
            }
        )
    return out


def _model_context(user: User, model: str | None) -> dict[str, Any]:
    services, principal = user.services, user.principal
    choices = []
    for m in services.registry.list_models(principal):
        for v in services.registry.list_versions(principal, m.id):
            if not v.deprecated:
                choices.append(v)
    version = services.registry.resolve(principal, model, field="model") if model else None
    return {
        "choices": choices,
        "version": version,
        "fields": schema_fields(version) if version else [],
        "environments": services.registry.list_environments(principal),
        "folders": services.folders.list(principal),
        "priorities": PRIORITIES,
    }


@router.get("/model")
def model_form(request: Request, user: UserDep, model: str | None = None) -> Response:
    ctx = _model_context(user, model)
    return page(request, "submit_model.html", user, {**ctx, "form": {}, "errors": {}})


@router.post("/model")
async def submit_model(request: Request, user: WriterDep) -> Response:
    form = await request.form()
    problems = FieldErrors()
    body = _common(form, problems)
    model = text(form, "model")
    body["model"] = model
    for name in ("environment", "input_folder", "output_folder"):
        if text(form, name):
            body[name] = text(form, name)
    body["parameters"] = parse_parameters(form, problems)
    bindings = [
        {"role": key[len(ROLE) :], "folder": text(form, key)}
        for key in form
        if key.startswith(ROLE) and text(form, key)
    ]
    if bindings:
        body["role_bindings"] = bindings
    job_id = None if problems else await run_in_threadpool(_submit, user, body, problems)
    if job_id is not None:
        return see_other(f"{PREFIX}/jobs/{job_id}")
    ctx = await run_in_threadpool(_model_context, user, model or None)
    return page(
        request,
        "submit_model.html",
        user,
        {**ctx, "form": dict(form), "errors": problems.by_field},
        status_code=422,
    )
