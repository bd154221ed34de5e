"""The Prediction API (spec 004) under ``/api/v1``: sources are jobyard models, source
versions are immutable model versions, and jobs are job definitions, all scoped to the
key's tenant (the "organisation"). Only translation happens here; see
``docs/reference/compat-prediction.md``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from jobyard import errors
from jobyard.api.compat.prediction_mapping import (
    SETUP_FIELDS,
    JobSetupRequest,
    PredictionJob,
    PredictionJobUpdate,
    SourceIn,
    SourceOut,
    SourceVersionIn,
    SourceVersionOut,
    setup_of,
    spec_not_found,
    updated_spec,
)
from jobyard.api.compat.wire import spec_error
from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS
from jobyard.domain.auth import Principal
from jobyard.domain.definitions import JobDefinition
from jobyard.domain.registry import Model, ModelVersion
from jobyard.wiring import Services

router = APIRouter(prefix="/api/v1", tags=["compat: Prediction API"], responses=ERRORS)


# ---- lookups in the caller's organisation --------------------------------------------
def _check_organisation(principal: Principal, organisation_id: str | None) -> None:
    """Another organisation answers as if it did not exist (404, never 403)."""
    if organisation_id is not None and organisation_id != principal.tenant_id:
        raise errors.NotFound(
            f"organisation {organisation_id} does not exist",
            kind="organisation",
            id=organisation_id,
        )


def _source(runtime: Services, principal: Principal, ref: str) -> Model:
    try:
        return runtime.registry.get_model(principal, ref)
    except errors.NotFound:
        raise errors.NotFound(f"source {ref} does not exist", kind="source", id=ref) from None


def _version(runtime: Services, principal: Principal, version_id: str) -> ModelVersion:
    """The caller's version with this id (``resolve`` also takes names: check the id)."""
    try:
        found = runtime.registry.resolve(principal, version_id, field="source_version_id")
    except (errors.NotFound, errors.InvalidInput):
        found = None
    if found is None or found.id != version_id:
        raise errors.NotFound(
            f"source version {version_id} does not exist", kind="source_version", id=version_id
        )
    return found


def _jobs(
    runtime: Services, principal: Principal, defs: list[JobDefinition]
) -> list[PredictionJob]:
    versions: dict[str, ModelVersion] = {}
    out = []
    for d in defs:
        if d.model_version_id not in versions:
            versions[d.model_version_id] = _version(runtime, principal, d.model_version_id)
        out.append(PredictionJob.of(d, versions[d.model_version_id]))
    return out


# ---- routes --------------------------------------------------------------------------
@router.post("/sources", status_code=status.HTTP_201_CREATED, summary="Create a source")
def create_source(body: SourceIn, runtime: ServicesDep, principal: PrincipalDep) -> SourceOut:
    model = runtime.registry.create_model(
        principal,
        body.name,
        body.description,
        body.expectedintervalminutes,
        body.retention_hours,
    )
    return SourceOut.of(model)


@router.post(
    "/source_versions", status_code=status.HTTP_201_CREATED, summary="Create a source version"
)
def create_source_version(
    body: SourceVersionIn, runtime: ServicesDep, principal: PrincipalDep
) -> SourceVersionOut:
    model = _source(runtime, principal, body.source_id)
    version = runtime.registry.create_version(principal, model.id, body.to_spec(model.name))
    return SourceVersionOut.of(version)


@router.post("/jobs/setup", status_code=status.HTTP_201_CREATED, summary="Set up a job")
def setup_job(
    body: JobSetupRequest, runtime: ServicesDep, principal: PrincipalDep
) -> PredictionJob:
    _check_organisation(principal, body.organisation_id)
    if body.job.organisation_id not in (None, body.organisation_id):
        raise errors.InvalidInput(
            "job.organisation_id: leave it null (the top-level organisation_id applies)",
            field="job.organisation_id",
        )
    try:
        definition, version = runtime.definitions.set_up(principal, setup_of(body))
    except errors.InvalidInput as e:
        raise spec_error(e, SETUP_FIELDS) from e
    except errors.NotFound as e:
        raise spec_not_found(e) from e
    return PredictionJob.of(definition, version)


@router.get("/jobs", summary="List the organisation's jobs")
def list_jobs(runtime: ServicesDep, principal: PrincipalDep) -> list[PredictionJob]:
    return _jobs(runtime, principal, runtime.definitions.list_definitions(principal))


@router.get("/jobs/{job_id}", summary="Get a job")
def get_job(job_id: str, runtime: ServicesDep, principal: PrincipalDep) -> PredictionJob:
    return _jobs(runtime, principal, [runtime.definitions.get(principal, job_id)])[0]


@router.put("/jobs/{job_id}", summary="Update a job")
def update_job(
    job_id: str, body: PredictionJobUpdate, runtime: ServicesDep, principal: PrincipalDep
) -> PredictionJob:
    _check_organisation(principal, body.organisation_id)
    current = runtime.definitions.get(principal, job_id)
    version = _version(runtime, principal, body.source_version_id or current.model_version_id)
    if body.source_id is not None and body.source_id not in (version.model_id, version.model_name):
        raise errors.InvalidInput(
            f"source_id: the job runs source {version.model_id}; change the source by"
            " naming one of its versions in source_version_id",
            field="source_id",
        )
    spec = updated_spec(current, body, version.id)
    return PredictionJob.of(runtime.definitions.update(principal, job_id, spec), version)


@router.delete("/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a job")
def delete_job(job_id: str, runtime: ServicesDep, principal: PrincipalDep) -> Response:
    runtime.definitions.delete(principal, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
