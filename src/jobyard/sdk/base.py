"""The HTTP plumbing shared by the SDK's client and its mixins."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from jobyard.sdk.errors import APIError, ConnectionFailed, raise_for_response

M = TypeVar("M", bound=BaseModel)


class BaseClient:
    """Requests with jobyard's error mapping; subclasses add the resources."""

    url: str
    _http: httpx.Client
    _timeout: float

    def _connection_error(self, exc: httpx.TransportError) -> ConnectionFailed:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            message = (
                f"cannot reach the jobyard server at {self.url} ({exc}); "
                "start it with `jobyard serve` or set JOBYARD_URL"
            )
        else:
            message = f"request to the jobyard server at {self.url} failed: {exc!r}"
        return ConnectionFailed(message, code="CONNECTION_FAILED")

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._connection_error(exc) from exc
        raise_for_response(resp)
        return resp

    def _parse(self, model: type[M], resp: httpx.Response) -> M:
        try:
            return model.model_validate(resp.json())
        except (ValueError, ValidationError) as exc:
            raise APIError(
                f"the server at {self.url} sent an unexpected answer: {exc}",
                status_code=resp.status_code,
                code="BAD_RESPONSE",
            ) from exc
