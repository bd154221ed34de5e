"""The Prediction API (spec 004) under ``/api/v1``: sources are jobyard models, source
versions are immutable model versions, and jobs are job definitions, all scoped to the
key's tenant (the "organisation"). Only translation happens here; see
``docs/compat-prediction.md``."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Response, status

from jobyard import errors
from jobyard.api.compat.prediction_mapping import (
    JobSetupRequest,
    PredictionJob,
    PredictionJobUpdate,
    SetupSourceIn,
    SourceIn,
    SourceOut,
    SourceVersionIn,
    SourceVersionOut,
    setup_spec,
    updated_spec,
)
from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.routes.jobs import ERRORS
from jobyard.domain.auth import Principal
from jobyard.domain.definitions import JobDefinition
from jobyard.domain.registry import Model, ModelVersion
from jobyard.wiring import Services

log = logging.getLogger("jobyard.api.compat.prediction")

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


# ---- job setup -----------------------------------------------------------------------
class _Setup:
    """One setup request: finds or creates its source and version and creates the
    definition; what it created is deleted again when a later step fails."""

    def __init__(self, runtime: Services, principal: Principal) -> None:
        self.runtime = runtime
        self.principal = principal
        self.undo: list[Callable[[], None]] = []

    def run(self, body: JobSetupRequest) -> tuple[JobDefinition, ModelVersion]:
        try:
            version = self._version(body)
            spec = setup_spec(body, version.id)
            return self.runtime.definitions.create(self.principal, spec), version
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        for step in reversed(self.undo):
            try:
                step()
            except errors.JobyardError:
                log.warning("job setup: could not undo a step", exc_info=True)

    def _source(self, body: JobSetupRequest) -> Model | None:
        refs = {
            "source.id": body.source.id if body.source else None,
            "job.source_id": body.job.source_id,
            "source_version.source_id": body.source_version.source_id
            if body.source_version
            else None,
        }
        found = {f: _source(self.runtime, self.principal, r) for f, r in refs.items() if r}
        if body.source is not None and body.source.id is None:
            found["source.name"] = self._named_or_new(body.source)
        if len({m.id for m in found.values()}) > 1:
            raise errors.InvalidInput(
                f"{', '.join(found)}: name different sources", field=next(iter(found))
            )
        return next(iter(found.values()), None)

    def _named_or_new(self, source: SetupSourceIn) -> Model:
        if source.name is None:
            raise errors.InvalidInput(
                "source: give its id (an existing source) or its name", field="source"
            )
        registry, principal = self.runtime.registry, self.principal
        try:
            return registry.get_model(principal, source.name)
        except errors.NotFound:
            pass
        model = registry.create_model(
            principal,
            source.name,
            source.description,
            source.expectedintervalminutes,
            source.retention_hours,
        )
        self.undo.append(lambda: registry.delete_model(principal, model.id))
        return model

    def _version(self, body: JobSetupRequest) -> ModelVersion:
        model = self._source(body)
        registry, principal, job = self.runtime.registry, self.principal, body.job
        if body.source_version is not None:
            if job.source_version_id is not None:
                raise errors.InvalidInput(
                    "job.source_version_id: give a new source_version or"
                    " job.source_version_id, not both",
                    field="job.source_version_id",
                )
            if model is None:
                raise errors.InvalidInput(
                    "source_version: name its source (source, job.source_id or"
                    " source_version.source_id)",
                    field="source_version.source_id",
                )
            spec = body.source_version.to_spec(model.name)
            version = registry.create_version(principal, model.id, spec)
            self.undo.append(lambda: registry.delete_version(principal, model.id, version.version))
            return version
        if job.source_version_id is not None:
            version = _version(self.runtime, principal, job.source_version_id)
            if model is not None and version.model_id != model.id:
                raise errors.InvalidInput(
                    f"job.source_version_id: version {version.id} is not a version of"
                    f" source {model.name}",
                    field="job.source_version_id",
                )
            return version
        if model is None:
            raise errors.InvalidInput(
                "job.source_id: name the source to run (source, job.source_id or"
                " job.source_version_id)",
                field="job.source_id",
            )
        try:
            return registry.resolve(principal, model.name)
        except errors.NotFound:
            raise errors.InvalidInput(
                f"source_version: source {model.name} has no version to run; create one"
                " (source_version) or name one (job.source_version_id)",
                field="source_version",
            ) from None


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
    definition, version = _Setup(runtime, principal).run(body)
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
