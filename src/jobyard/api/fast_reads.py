"""``GET /v1/jobs/{id}`` and ``GET /v1/jobs`` for the common case, without the
framework's work per request.

Every client polls these two (``Client.wait``, a list of the ended jobs with
``limit=1``). For a key the server has seen, this ASGI middleware does what the routes
do — the cached key (read again in the thread pool when its entry is due), the rate
limit, the role check, then in one hop to the thread pool the same service calls and
models (``api.job_reads``) — without FastAPI's routing, dependency solving and
parameter validation. Anything else goes to the route, which answers it as it always
has: a key never read, a job token, a query string on a job's read, and a list query
with a parameter the fast path does not read itself (a time range, an unknown name, a
single-valued parameter given twice or blank, a ``limit``, ``cursor`` or ``id_prefix``
the route would refuse). Errors after the key (403, 404, 422 for an unknown state, 429,
503) are answered through ``api.errors``, as the routes' handler answers them. The
routes stay the ones documented in the OpenAPI schema.

The server's application (``api.app.App``) calls it before FastAPI's own middleware
stack, which it then skips: an error it did not expect gets the app's own 500 answer
here (``internal_error``), as the stack would give it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from jobyard import errors
from jobyard.api.deps import check_user, known_caller
from jobyard.api.errors import error_of, internal_error
from jobyard.api.job_reads import (
    ID_PREFIX,
    MAX_CURSOR,
    MAX_LIMIT,
    job_filter,
    job_page,
    one_job,
    to_json,
)
from jobyard.domain.auth import Principal
from jobyard.wiring import Services

PATH = "/v1/jobs"
_JOB_PREFIX = PATH + "/"
_JSON = b"application/json"

#: the list's parameters read here: the repeated ones, and those given at most once
_REPEATED = frozenset({"status", "priority"})
_SINGLE = frozenset({"job_type", "submitted_by", "id_prefix", "cursor", "limit"})
#: what the route accepts (``api.job_reads``'s bounds; ``limit`` as plain digits); anything
#: else goes to the route for its 422
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
_ID_PREFIX = re.compile(ID_PREFIX)


@dataclass(frozen=True)
class ListQuery:
    """The parameters of a list request the fast path answers."""

    status: list[str] | None = None
    priority: list[str] | None = None
    job_type: str | None = None
    submitted_by: str | None = None
    id_prefix: str | None = None
    cursor: str | None = None
    limit: int = 50


def list_query(raw: bytes) -> ListQuery | None:
    """The list's parameters from a query string (split as Starlette splits it), or None
    where the route must read them."""
    repeated: dict[str, list[str]] = {}
    single: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name in _REPEATED:
            repeated.setdefault(name, []).append(value)
        elif name in _SINGLE and value and name not in single:
            single[name] = value
        else:
            return None
    limit = single.pop("limit", "50")
    if not _LIMIT.fullmatch(limit) or int(limit) > MAX_LIMIT:
        return None
    if len(single.get("cursor", "")) > MAX_CURSOR:
        return None
    if "id_prefix" in single and not _ID_PREFIX.fullmatch(single["id_prefix"]):
        return None
    return ListQuery(
        status=repeated.get("status"),
        priority=repeated.get("priority"),
        limit=int(limit),
        **single,
    )


class FastReads:
    """Answers a job's and the list's common reads itself; hands every other request to
    ``app``."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        work = self._work(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if work is None:
            await self.app(scope, receive, send)
            return
        authorization: str | None = None
        for name, value in scope["headers"]:
            # a second key (which counts is the route's to say), a body (too large: 413)
            if (name == b"authorization" and authorization is not None) or (
                name == b"content-length" and value != b"0"
            ):
                await self.app(scope, receive, send)
                return
            if name == b"authorization":
                authorization = value.decode("latin-1")
        principal = await known_caller(self.services, authorization)
        if principal is None:
            await self.app(scope, receive, send)
            return
        try:
            try:
                self.services.rate_limiter.check(principal.key_id)
                check_user(principal, "GET")
                body = await run_in_threadpool(work, principal)
            except errors.JobyardError as e:
                await error_of(e)(scope, receive, send)
                return
        except Exception as e:  # a bug: the answer the app's stack would give, re-raised
            await internal_error(e)(scope, receive, send)
            raise
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _work(self, scope: Scope) -> Callable[[Principal], bytes] | None:
        """The answer's JSON for a principal (run in the thread pool), or None where the
        route must answer this request."""
        path: str = scope["path"]
        services = self.services
        if path == PATH:
            query = list_query(scope["query_string"])
            if query is None:
                return None

            def page(principal: Principal) -> bytes:
                flt = job_filter(
                    status=query.status,
                    priority=query.priority,
                    job_type=query.job_type,
                    submitted_by=query.submitted_by,
                    id_prefix=query.id_prefix,
                )
                return to_json(job_page(services, principal, flt, query.limit, query.cursor))

            return page
        if not path.startswith(_JOB_PREFIX) or scope["query_string"]:
            return None
        job_id = path[len(_JOB_PREFIX) :]
        if not job_id or "/" in job_id:
            return None
        return lambda principal: to_json(one_job(services, principal, job_id))
