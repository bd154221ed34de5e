"""``POST /v1/jobs`` for the common case, without the framework's work per request.

Most submits are a plain command job from a key the server has seen. For those, this
ASGI middleware does what the route does (the cached key, read again in the thread
pool when its entry is due; the rate limit; the same ``JobCreate`` model; the same
service calls; the same ``JobOut`` answer) without FastAPI's routing, dependency
solving and response validation. Anything else — a key never read, a body that does
not validate, a request that names a model or an idempotency key, a query string, an
error before the job was stored — goes, with its body, to the route itself, which
answers it (and its errors) as it always has. The route stays the one documented in
the OpenAPI schema.

The server's application (``api.app.App``) calls it before FastAPI's own middleware
stack, which it then skips: an error it did not expect gets the app's own 500 answer
here (``internal_error``), as the stack would give it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobyard import errors
from jobyard.api.deps import check_user, known_caller
from jobyard.api.errors import internal_error
from jobyard.api.schemas.jobs import JobCreate, JobOut
from jobyard.wiring import Services

PATH = "/v1/jobs"
_JSON_HEADERS = [(b"content-type", b"application/json")]


class FastSubmit:
    """Answers plain submits itself; hands every other request to ``app``."""

    def __init__(self, app: ASGIApp, services: Services, max_body: int) -> None:
        self.app = app
        self.services = services
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        authorization: str | None = None
        length, json = -1, False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"content-type":
                json = value.startswith(b"application/json")
            elif name == b"idempotency-key":
                json = False  # the route resolves idempotent submits
                break
        if not json or length < 0 or length > self.max_body:
            await self.app(scope, receive, send)
            return
        body, messages = await _read_body(receive)
        try:
            answer = await self._submit(authorization, body)
        except Exception as e:  # a bug: the answer the app's stack would give, re-raised
            await internal_error(e)(scope, receive, send)
            raise
        if answer is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        status, payload = answer
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _submit(self, authorization: str | None, body: bytes) -> tuple[int, bytes] | None:
        """(status, JSON) of the accepted job, or None where the route must answer."""
        services = self.services
        principal = await known_caller(services, authorization)
        if principal is None:
            return None
        try:
            check_user(principal, "POST")
            request = JobCreate.model_validate_json(body).to_request(None)
            if not request.is_plain:
                return None
            services.rate_limiter.check(principal.key_id)
            accepted = await services.jobs.submit_plain(principal, request)
            if accepted is None:  # the tenant's quotas are read again, as the route does
                accepted = await run_in_threadpool(services.jobs.submit_request, principal, request)
        except (errors.JobyardError, ValidationError):
            return None  # nothing was stored: the route answers with its error
        job, created = accepted
        out = JobOut.from_job(job, services.clock.now())
        return (201 if created else 200), out.model_dump_json().encode()


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


def _replay(messages: list[Message], receive: Receive) -> Any:
    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed
