"""Wire shapes of the Insights Hub Job Manager v3 and their translation to and from
jobyard's jobs (``docs/reference/compat-insights-hub.md`` lists every field and status)."""

from __future__ import annotations

import re
from math import ceil
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobyard.api.compat.wire import iso_ms
from jobyard.domain.jobs import Job, JobSpec
from jobyard.domain.states import JobState
from jobyard.service.submission import JobRequest

#: where a job remembers the references its client sent, to echo them back unchanged
REF_KEY = "insightsHub.{}"
REFS = ("modelId", "configurationId", "inputFolderId", "outputFolderId")
#: native request fields → the spec's names (for error messages)
SPEC_FIELDS = {
    "model": "modelId",
    "environment": "configurationId",
    "input_folder": "inputFolderId",
    "output_folder": "outputFolderId",
    "role_bindings": "inputFolderId",
    "timeout_s": "maximumExecutionTimeInSeconds",
}

STATUS: dict[JobState, str] = {
    JobState.SCHEDULED: "SUBMITTED",
    JobState.QUEUED: "SUBMITTED",
    JobState.STARTING: "PENDING",
    JobState.RUNNING: "RUNNING",
    JobState.CANCELLING: "STOPPING",
    JobState.CANCELLED: "STOPPED",
    JobState.SUCCEEDED: "SUCCEEDED",
    JobState.FAILED: "FAILED",
    JobState.TIMED_OUT: "FAILED",
}
#: Spring Data's page defaults (``spring.data.web.pageable``)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 2000
_INT_MAX = 2**31 - 1  #: Java's ``Integer.MAX_VALUE``
_JAVA_INT = re.compile(r"(?P<sign>[+-]?)(?P<digits>[0-9]+)")


def status_of(job: Job, *, environment_busy: bool = False) -> str:
    """The spec's status. A queued job is PENDING when it waits for its environment
    configuration (or was claimed before, for a retry), else SUBMITTED."""
    if job.state is JobState.QUEUED and (environment_busy or job.attempt > 0):
        return "PENDING"
    return STATUS[job.state]


def _spring_int(text: str | None, upper: int) -> int | None:
    """A page parameter as Spring parses it: None when blank, 0 when it is not an int
    (``Integer.parseInt`` fails), else clamped to 0…``upper``."""
    if text is None or not text.strip():
        return None
    found = _JAVA_INT.fullmatch(text)
    digits = found["digits"].lstrip("0") or "0" if found else ""
    if found is None or len(digits) > len(str(_INT_MAX)):
        return 0
    value = -int(digits) if found["sign"] == "-" else int(digits)
    if not -_INT_MAX - 1 <= value <= _INT_MAX:
        return 0
    return min(max(value, 0), upper)


def spring_page(page_number: str | None, page_size: str | None) -> tuple[int, int]:
    """(page, size) as Spring Data's ``PageableHandlerMethodArgumentResolver`` reads
    them: no error for any value; a negative or unreadable page is 0, a size below 1 or
    unreadable is the default, a size over the maximum is the maximum."""
    number = _spring_int(page_number, _INT_MAX) or 0
    size = _spring_int(page_size, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    return number, size


class JobIn(BaseModel):
    """``POST /jobs``. Unknown fields are ignored, as a Spring service does."""

    model_config = ConfigDict(extra="ignore")

    modelId: str = Field(
        min_length=1,
        max_length=300,
        description="A model version id, `name:version`, or a model id or name (its newest"
        " version).",
    )
    configurationId: str | None = Field(
        None, min_length=1, max_length=200, description="Environment configuration id or name."
    )
    inputFolderId: str | None = Field(
        None, min_length=1, max_length=200, description="Folder id or name."
    )
    outputFolderId: str | None = Field(
        None, min_length=1, max_length=200, description="Folder id or name; must exist."
    )
    maximumExecutionTimeInSeconds: int | None = Field(
        None, gt=0, le=30 * 24 * 3600, description="Limit on running time."
    )
    name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=10_000)

    def to_request(self) -> JobRequest:
        refs = {REF_KEY.format(k): v for k in REFS if (v := getattr(self, k)) is not None}
        limit = self.maximumExecutionTimeInSeconds
        spec = JobSpec(
            name=self.name,
            description=self.description,
            timeout_s=float(limit) if limit is not None else None,
            metadata=refs,
        )
        return JobRequest(
            spec=spec,
            model=self.modelId,
            environment=self.configurationId,
            input_folder=self.inputFolderId,
            output_folder=self.outputFolderId,
        )


class _JobFields(BaseModel):
    modelId: str | None
    environmentId: str | None
    message: str
    status: str
    creationDate: str
    createdBy: str
    inputFolderId: str | None
    outputFolderId: str | None
    configurationId: str | None
    maximumExecutionTimeInSeconds: int | None
    name: str | None
    description: str | None

    @classmethod
    def fields_of(cls, job: Job, status: str, message: str) -> dict[str, Any]:
        s = job.spec

        def ref(key: str, resolved: str | None) -> str | None:
            return s.metadata.get(REF_KEY.format(key), resolved)

        return {
            "modelId": ref("modelId", s.model_version_id),
            "environmentId": s.environment_id,
            "message": message,
            "status": status,
            "creationDate": iso_ms(job.created_at),
            "createdBy": job.tenant_id,
            "inputFolderId": ref("inputFolderId", s.input_folder_id),
            "outputFolderId": ref("outputFolderId", s.output_folder_id),
            "configurationId": ref("configurationId", s.environment_id),
            "maximumExecutionTimeInSeconds": ceil(s.timeout_s) if s.timeout_s else None,
            "name": s.name,
            "description": s.description,
        }


class JobOut(_JobFields):
    """A job as ``POST /jobs``, ``GET /jobs/{id}`` and ``POST /jobs/{id}/stop`` answer it."""

    id: str

    @classmethod
    def of(cls, job: Job, status: str, message: str) -> JobOut:
        return cls(id=job.id, **cls.fields_of(job, status, message))


class JobItem(_JobFields):
    """A job in a list: the spec names its id ``jobId`` there."""

    jobId: str

    @classmethod
    def of(cls, job: Job, status: str, message: str) -> JobItem:
        return cls(jobId=job.id, **cls.fields_of(job, status, message))


class JobPage(BaseModel):
    """Spring Data's page envelope (``number`` counts from 0)."""

    content: list[JobItem]
    totalPages: int
    totalElements: int
    last: bool
    size: int
    number: int
    numberOfElements: int
    first: bool
    sort: None = None

    @classmethod
    def of(cls, content: list[JobItem], *, total: int, number: int, size: int) -> JobPage:
        pages = ceil(total / size)
        return cls(
            content=content,
            totalPages=pages,
            totalElements=total,
            last=number + 1 >= pages,
            size=size,
            number=number,
            numberOfElements=len(content),
            first=number == 0,
        )
