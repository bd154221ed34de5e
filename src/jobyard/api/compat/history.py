"""The job history API (spec 002) under ``/api/history/jobs``: jobs with their item
counts, times and inputs, filtered by status, model and date. The spec names no routes;
these are jobyard's. Only translation happens here; see ``docs/reference/compat-history.md``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from jobyard import errors
from jobyard.api.compat.history_mapping import HistoryJob, HistoryPage, states_for
from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS
from jobyard.clock import ensure_utc
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job, JobFilter
from jobyard.domain.registry import ModelVersion
from jobyard.wiring import Services

#: batch items shown per job
MAX_INPUTS = 1000
MAX_PAGE_SIZE = 500

router = APIRouter(
    prefix="/api/history/jobs",
    tags=["compat: job history"],
    responses=ERRORS,
)


def _version_ids(runtime: Services, principal: Principal, ref: str) -> frozenset[str]:
    """The versions a ``model`` filter names: ``NAME:VERSION`` or a version id → that
    version; a model name or id → all its versions; nothing known → none."""
    name, sep, version = ref.partition(":")
    try:
        if sep:
            return frozenset({runtime.registry.get_version(principal, name, version).id})
        try:
            model = runtime.registry.get_model(principal, ref)
        except errors.NotFound:
            found = runtime.registry.resolve(principal, ref)
            return frozenset({found.id} if found.id == ref else ())
        return frozenset(v.id for v in runtime.registry.list_versions(principal, model.id))
    except errors.NotFound:
        return frozenset()


class _Render:
    """Turns jobs into the spec's objects, looking each model version up once."""

    def __init__(self, runtime: Services, principal: Principal, *, inputs: bool) -> None:
        self.runtime, self.principal, self.inputs = runtime, principal, inputs
        self.now = runtime.clock.now()
        self.versions: dict[str, ModelVersion | None] = {}

    def _model(self, version_id: str | None) -> ModelVersion | None:
        if version_id is None:
            return None
        if version_id not in self.versions:
            try:
                self.versions[version_id] = self.runtime.registry.resolve(
                    self.principal, version_id
                )
            except errors.NotFound:
                self.versions[version_id] = None
        return self.versions[version_id]

    def __call__(self, job: Job) -> HistoryJob:
        inputs: list[Any] = []
        if self.inputs:
            inputs = self.runtime.jobs.batch_inputs(job, limit=MAX_INPUTS) or []
        return HistoryJob.of(job, self.now, self._model(job.spec.model_version_id), inputs)


@router.get("", summary="List jobs, newest first, in pages (page from 1)")
def list_jobs(
    runtime: ServicesDep,
    principal: PrincipalDep,
    status: Annotated[str, Query(description="all, timedout, pending or terminated")] = "all",
    model: Annotated[
        str | None,
        Query(
            max_length=300,
            description="A model name or id (all its versions), `name:version` or a version id.",
        ),
    ] = None,
    created_from: Annotated[datetime | None, Query(alias="createdFrom")] = None,
    created_to: Annotated[datetime | None, Query(alias="createdTo")] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 20,
    include_inputs: Annotated[bool, Query(alias="includeInputs")] = False,
) -> HistoryPage:
    states = states_for(status)
    versions = _version_ids(runtime, principal, model) if model is not None else frozenset()
    jobs: list[Job] = []
    total = 0
    if model is None or versions:  # a model with no (known) versions has no jobs
        flt = JobFilter(
            states=states,
            model_version_ids=versions,
            created_from=ensure_utc(created_from),
            created_to=ensure_utc(created_to),
        )
        found = runtime.jobs.page_at(principal, flt, offset=(page - 1) * page_size, size=page_size)
        jobs, total = found.items, found.total
    render = _Render(runtime, principal, inputs=include_inputs)
    return HistoryPage(
        items=[render(j) for j in jobs],
        page=page,
        pageSize=page_size,
        total=total,
        hasNextPage=page * page_size < total,
    )


@router.get("/{jobIdentifier}", summary="Get a job with its inputs")
def get_job(jobIdentifier: str, runtime: ServicesDep, principal: PrincipalDep) -> HistoryJob:
    job = runtime.jobs.get(principal, jobIdentifier)
    return _Render(runtime, principal, inputs=True)(job)
