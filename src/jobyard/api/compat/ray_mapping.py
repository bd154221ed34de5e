"""Ray Jobs (API version 4, Ray 2.60) ↔ jobyard: statuses, error types, times, the
submit request and JobDetails. Pure functions; see ``docs/reference/compat-ray.md``."""

from __future__ import annotations

import secrets
import shlex
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobyard import errors
from jobyard.domain.jobs import ErrorType, Job, JobSpec
from jobyard.domain.states import JobState

API_VERSION = "4"  #: ``ray.dashboard.modules.version.CURRENT_VERSION``
RAY_VERSION = "2.60.0"  #: the Ray release whose Jobs API this router speaks
RAY_COMMIT = "b7f4259e944bf6959f721b106adc366ddfa0c356"  #: that release's commit
SESSION_NAME = "jobyard"

STATUS: dict[JobState, str] = {
    JobState.SCHEDULED: "PENDING",
    JobState.QUEUED: "PENDING",
    JobState.STARTING: "PENDING",
    JobState.RUNNING: "RUNNING",
    JobState.CANCELLING: "RUNNING",
    JobState.SUCCEEDED: "SUCCEEDED",
    JobState.FAILED: "FAILED",
    JobState.TIMED_OUT: "FAILED",
    JobState.CANCELLED: "STOPPED",
}
#: jobyard error types whose Ray name differs; the others keep their name
ERROR_TYPES: dict[str, str] = {
    ErrorType.ENTRYPOINT_COMMAND_ERROR: "JOB_ENTRYPOINT_COMMAND_ERROR",
    ErrorType.ENTRYPOINT_COMMAND_START_ERROR: "JOB_ENTRYPOINT_COMMAND_START_ERROR",
    ErrorType.RUNTIME_ENV_SETUP_FAILED: "RUNTIME_ENV_SETUP_FAILURE",
}

#: jobyard errors → the status Ray's server answers for the like (others: 500)
HTTP_STATUS: dict[type[errors.JobyardError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 400,
    errors.StoreUnavailable: 503,
}

SUBMIT_FIELDS = frozenset(
    {
        "entrypoint",
        "submission_id",
        "job_id",
        "runtime_env",
        "metadata",
        "entrypoint_num_cpus",
        "entrypoint_num_gpus",
        "entrypoint_memory",
        "entrypoint_resources",
        "entrypoint_label_selector",
    }
)
#: runtime_env keys used here; ``excludes`` and ``config`` only matter to Ray's client
#: or Ray workers, so they are accepted and echoed; every other key is refused
RUNTIME_ENV_KEYS = frozenset({"env_vars", "working_dir", "py_modules", "excludes", "config"})
PACKAGE_PROTOCOL = "gcs"
MAX_SUBMISSION_ID = 200  #: the idempotency key's length limit
_ID_ALPHABET = "".join(sorted(set(string.ascii_letters + string.digits) - set("IloO0")))


class BadRequest(ValueError):
    """A request Ray's job server would answer with 400."""


@dataclass(frozen=True)
class Submission:
    """A parsed ``JobSubmitRequest``: the jobyard spec and the packages it needs."""

    submission_id: str
    spec: JobSpec
    package_uris: tuple[str, ...]


def http_status(exc: errors.JobyardError) -> int:
    return next((HTTP_STATUS[c] for c in type(exc).__mro__ if c in HTTP_STATUS), 500)


def duplicate_message(submission_id: str) -> str:
    """Ray's text for a reused submission id (KubeRay matches it)."""
    return (
        f"Job with submission_id {submission_id} already exists. "
        "Please use a different submission_id."
    )


def not_ended_message(ref: str, state: JobState) -> str:
    """Ray's text for deleting a job that has not ended."""
    return f"Attempted to delete job '{ref}', but it is in a non-terminal state {STATUS[state]}."


def new_submission_id() -> str:
    """``raysubmit_`` and 16 characters, like Ray's ``generate_job_id``."""
    return "raysubmit_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def ms(at: datetime | None) -> int | None:
    """A time as Ray sends it: integer Unix milliseconds."""
    return None if at is None else int(at.timestamp() * 1000)


def _str_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a dict, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise BadRequest(f"{what} keys and values must be strings, got {k!r}: {v!r}")
    return dict(value)


def _number(value: Any, what: str, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise BadRequest(f"{what} must be {'an integer' if integer else 'a number'}")


def _check_resources(body: dict[str, Any]) -> None:
    """Type checks of the entrypoint resource fields (accepted, not used: see the docs)."""
    for name in ("entrypoint_num_cpus", "entrypoint_num_gpus"):
        if name in body:
            _number(body[name], name)
    if "entrypoint_memory" in body:
        _number(body["entrypoint_memory"], "entrypoint_memory", integer=True)
    if "entrypoint_resources" in body:
        resources = body["entrypoint_resources"]
        if not isinstance(resources, dict) or not all(isinstance(k, str) for k in resources):
            raise BadRequest("entrypoint_resources must be a dict with string keys")
        for v in resources.values():
            _number(v, "entrypoint_resources values")
    if "entrypoint_label_selector" in body:
        _str_map(body["entrypoint_label_selector"], "entrypoint_label_selector")


def _package(uri: Any, field: str, suffixes: tuple[str, ...]) -> str:
    if not isinstance(uri, str):
        raise BadRequest(f"runtime_env.{field} must be a string URI")
    protocol, sep, name = uri.partition("://")
    if not sep or protocol != PACKAGE_PROTOCOL:
        raise BadRequest(
            f"runtime_env.{field} {uri!r} is not supported: jobyard runs only packages uploaded"
            f" to it ({PACKAGE_PROTOCOL}://…, which Ray's client makes from a local directory"
            " or file); remote URIs are not fetched"
        )
    if not name.endswith(suffixes):
        raise BadRequest(f"runtime_env.{field} {uri!r} must end in {' or '.join(suffixes)}")
    return uri


def _runtime_env(value: Any) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The job's env and packages from a runtime_env; refuses what jobyard cannot do."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise BadRequest("runtime_env must be a dict with string keys")
    unsupported = sorted(set(value) - RUNTIME_ENV_KEYS)
    if unsupported:
        raise BadRequest(
            f"runtime_env field(s) {', '.join(unsupported)} are not supported by jobyard"
            f" (supported: {', '.join(sorted(RUNTIME_ENV_KEYS))}); use a jobyard environment"
            " configuration for Python dependencies"
        )
    env = _str_map(value.get("env_vars") or {}, "runtime_env.env_vars")
    packages: list[dict[str, str]] = []
    if value.get("working_dir") is not None:
        uri = _package(value["working_dir"], "working_dir", (".zip",))
        packages.append({"uri": uri, "role": "working_dir"})
    modules = value.get("py_modules") or []
    if not isinstance(modules, list):
        raise BadRequest("runtime_env.py_modules must be a list of URIs")
    for m in modules:
        packages.append({"uri": _package(m, "py_modules", (".zip", ".whl")), "role": "py_module"})
    return env, packages


def parse_submit(body: Any) -> Submission:
    """A Ray ``JobSubmitRequest`` body as a jobyard spec (keys with null values are
    dropped first, as Ray does); raises :class:`BadRequest` like Ray's 400."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object (JobSubmitRequest)")
    body = {k: v for k, v in body.items() if v is not None}
    unknown = sorted(set(body) - SUBMIT_FIELDS)
    if unknown:
        raise BadRequest(
            f"TypeError: JobSubmitRequest.__init__() got an unexpected keyword argument"
            f" {unknown[0]!r}"
        )
    entrypoint = body.get("entrypoint")
    if not isinstance(entrypoint, str):
        raise BadRequest("entrypoint must be a string")
    sid = body.get("submission_id", body.get("job_id"))
    if sid is not None and (not isinstance(sid, str) or not 1 <= len(sid) <= MAX_SUBMISSION_ID):
        raise BadRequest(f"submission_id must be a string of 1 to {MAX_SUBMISSION_ID} characters")
    metadata = _str_map(body.get("metadata", {}), "metadata")
    _check_resources(body)
    runtime_env = body.get("runtime_env")
    env, packages = _runtime_env(runtime_env) if runtime_env is not None else ({}, [])
    sid = sid or new_submission_id()
    spec = JobSpec(
        entrypoint=entrypoint,
        metadata=metadata,
        env=env,
        idempotency_key=sid,
        packages=tuple(packages),
        runtime_env=runtime_env,
    )
    return Submission(sid, spec, tuple(p["uri"] for p in packages))


def submission_id(job: Job) -> str:
    """A job's Ray submission id: its idempotency key, else its jobyard id."""
    return job.spec.idempotency_key or job.id


def _entrypoint(spec: JobSpec) -> str:
    if spec.entrypoint is not None:
        return spec.entrypoint
    if spec.argv is not None:
        return shlex.join(spec.argv)
    return f"model version {spec.model_version_id}" if spec.model_version_id else ""


def error_type(job: Job) -> str | None:
    """Ray's ``error_type`` of a failed job (Ray sets none for stopped jobs)."""
    if STATUS[job.state] != "FAILED" or not job.error_type:
        return None
    return ERROR_TYPES.get(job.error_type, job.error_type)


def job_details(job: Job, node_ip_address: str = "127.0.0.1") -> dict[str, Any]:
    """A job as Ray's ``JobDetails`` (type SUBMISSION); every field present."""
    status = STATUS[job.state]
    driver = (
        {"id": job.id, "node_ip_address": node_ip_address, "pid": str(job.pid)}
        if job.pid is not None
        else None
    )
    return {
        "type": "SUBMISSION",
        "job_id": job.id,
        "submission_id": submission_id(job),
        "driver_info": driver,
        "status": status,
        "entrypoint": _entrypoint(job.spec),
        "message": job.message,
        "error_type": error_type(job),
        "start_time": ms(job.created_at),
        "end_time": ms(job.ended_at) if job.is_terminal else None,
        "metadata": dict(job.spec.metadata),
        "runtime_env": job.spec.runtime_env,
        "driver_agent_http_address": None,
        "driver_node_id": job.node_id,
        "driver_exit_code": job.exit_code if status in ("SUCCEEDED", "FAILED") else None,
    }


def version_info() -> dict[str, str]:
    """``GET /api/version``: what Ray's client checks (``ray_version`` ≥ 2.8, < 3.0)."""
    return {
        "version": API_VERSION,
        "ray_version": RAY_VERSION,
        "ray_commit": RAY_COMMIT,
        "session_name": SESSION_NAME,
    }
