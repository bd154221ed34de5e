"""The HTTP plumbing shared by the SDK's client and its mixins."""

from __future__ import annotations

import json as jsonlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
from httpx._utils import URLPattern, get_environment_proxies
from pydantic import BaseModel, ValidationError

from jobyard.sdk.errors import APIError, ConnectionFailed, raise_for_response
from jobyard.sdk.transport import FastTransport, RawResponse

M = TypeVar("M", bound=BaseModel)

#: paths that httpx sends as they are (it would quote the other characters)
_PLAIN_PATH = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
#: header values sent as they are (httpx refuses the others: those go through httpx)
_PLAIN_VALUE = re.compile(r"[\x20-\x7e]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FAST_KWARGS = frozenset({"json", "params", "headers"})
#: headers the transport writes itself; a caller's own value goes through httpx
_OWN_HEADERS = frozenset(
    {"accept", "authorization", "user-agent", "host", "content-type", "content-length"}
)

Params = Mapping[str, Any] | Sequence[tuple[str, Any]]


def _proxied(url: httpx.URL) -> bool:
    """Whether httpx (``trust_env``) would send to ``url`` through a proxy from the
    environment: its own rules, first matching pattern wins, ``NO_PROXY`` maps to None."""
    proxies = get_environment_proxies()
    for pattern in sorted(URLPattern(key) for key in proxies):
        if pattern.matches(url):
            return proxies[pattern.pattern] is not None
    return False


def _plain_path(path: str) -> bool:
    """Whether httpx would send ``path`` unchanged: nothing to quote, no dot segments."""
    if not _PLAIN_PATH.fullmatch(path):
        return False
    return "/." not in path or not any(s in (".", "..") for s in path.split("/"))


def _query_value(value: Any) -> str:
    """A query value as httpx writes it (``true``/``false``, ``None`` → empty)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _query(params: Params) -> str:
    """The query string httpx sends for ``params`` (``urlencode`` of its items)."""
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        if isinstance(value, list | tuple):
            pairs.extend((str(key), _query_value(v)) for v in value)
        else:
            pairs.append((str(key), _query_value(value)))
    return urlencode(pairs)


def _encode_json(body: Any) -> bytes:
    """The JSON body exactly as httpx encodes ``json=``."""
    return jsonlib.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


class BaseClient:
    """Requests with jobyard's error mapping; subclasses add the resources.

    Plain JSON requests go through :class:`FastTransport` when the client has one
    (``_fast``); everything else (uploads, streams, a caller's ``transport=``, proxies)
    through the httpx client ``_http``.
    """

    url: str
    _timeout: float
    _http_args: dict[str, Any]
    _http_client: httpx.Client | None = None
    _http_lock: threading.Lock
    _closed: bool = False
    _fast: FastTransport | None = None
    _prefix: str = ""
    _fast_headers: bytes = b""
    #: said with a 401: where the client looked for a key (or where its key came from)
    _auth_hint: str | None = None
    #: said when the server cannot be reached: where the client looked for it
    _url_hint: str | None = None

    def _init_transports(
        self, token: str | None, timeout: float, transport: httpx.BaseTransport | None
    ) -> None:
        """Set up the light transport if httpx would send straight to the server, and
        what the httpx client needs (made on first use: making it costs tens of ms)."""
        self._timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "jobyard-sdk"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http_args = {
            "base_url": self.url,
            "headers": headers,
            "timeout": timeout,
            "transport": transport,
        }
        self._http_lock = threading.Lock()
        httpx.Headers(headers)  # a key httpx cannot send fails here, as it did before
        base = httpx.URL(self.url)
        if (
            transport is not None
            or base.scheme not in ("http", "https")
            or not base.raw_host
            or base.userinfo
            or base.query
            or base.fragment
            or _proxied(base)
            or (token is not None and not _PLAIN_VALUE.fullmatch(token))
        ):
            return
        self._prefix = base.raw_path.decode("ascii").rstrip("/")
        self._fast_headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("ascii")
        context = None
        if base.scheme == "https":  # httpx's TLS settings, read now as httpx does; shared
            context = httpx.create_ssl_context()
            context.set_alpn_protocols(["http/1.1"])  # what httpcore sets too
            self._http_args["verify"] = context
        self._fast = FastTransport(
            base.raw_host.decode("ascii"),
            base.port or (443 if base.scheme == "https" else 80),
            base.netloc.decode("ascii"),
            timeout,
            context,
        )

    @property
    def _http(self) -> httpx.Client:
        """The httpx client: streams, uploads, ``transport=``, proxies (made on first use)."""
        client = self._http_client
        if client is None:
            with self._http_lock:
                client = self._http_client
                if client is None:
                    client = httpx.Client(**self._http_args)
                    if self._closed:
                        client.close()  # refuses requests like the closed client it stands for
                    self._http_client = client
        return client

    def _connection_error(self, exc: httpx.TransportError) -> ConnectionFailed:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            message = f"cannot reach the jobyard server at {self.url} ({exc}); " + (
                self._url_hint or "start it with `jobyard serve` or set JOBYARD_URL"
            )
        else:
            message = f"request to the jobyard server at {self.url} failed: {exc!r}"
        return ConnectionFailed(message, code="CONNECTION_FAILED")

    def _send_fast(self, method: str, path: str, kwargs: dict[str, Any]) -> RawResponse | None:
        """Send a plain request through ``_fast``; ``None`` if it needs httpx instead."""
        fast = self._fast
        if fast is None or not kwargs.keys() <= _FAST_KWARGS or not _plain_path(path):
            return None
        headers = self._fast_headers
        extra = kwargs.get("headers")
        if extra:
            lines = []
            for name, value in extra.items():
                if (
                    not (_TOKEN.fullmatch(name) and _PLAIN_VALUE.fullmatch(value))
                    or name.lower() in _OWN_HEADERS
                ):
                    return None  # httpx merges or refuses these
                lines.append(f"{name}: {value}\r\n")
            headers += "".join(lines).encode("ascii")
        body = None
        if kwargs.get("json") is not None:
            body = _encode_json(kwargs["json"])
            headers += b"Content-Type: application/json\r\n"
        target = self._prefix + path
        params = kwargs.get("params")
        if params and not isinstance(params, Mapping | list | tuple):
            return None  # e.g. a ready query string: httpx's rules
        if params:
            query = _query(params)
            if query:
                target = f"{target}?{query}"
        try:
            return fast.request(method, target, headers, body)
        except httpx.TransportError as exc:
            raise self._connection_error(exc) from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        raw = self._send_fast(method, path, kwargs)
        if raw is not None:
            resp = raw.to_httpx()
        else:
            try:
                resp = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise self._connection_error(exc) from exc
        raise_for_response(resp, self._auth_hint)
        return resp

    def _send_streaming(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send a request whose answer is read as it arrives (through httpx); an error
        answer is read, closed and raised. The caller closes the response."""
        request = self._http.build_request(
            method,
            path,
            params=params,
            headers=headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            resp = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._connection_error(exc) from exc
        if resp.status_code >= 400:
            try:
                resp.read()
            finally:
                resp.close()
            raise_for_response(resp, self._auth_hint)
        return resp

    @contextmanager
    def _stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Iterator[httpx.Response]:
        """``with client._stream("GET", path) as resp:`` read the answer as it arrives;
        a transport error while reading it is raised as :class:`ConnectionFailed`."""
        resp = self._send_streaming(method, path, params=params, timeout=timeout)
        try:
            yield resp
        except httpx.TransportError as exc:
            raise self._connection_error(exc) from exc
        finally:
            resp.close()

    def _call(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        """``_request`` and ``_parse`` in one; the answer's bytes go straight to pydantic."""
        raw = self._send_fast(method, path, kwargs)
        if raw is None:
            return self._parse(model, self._request(method, path, **kwargs))
        if raw.status_code >= 400:
            raise_for_response(raw.to_httpx(), self._auth_hint)
        return self._validate(model, raw.content, raw.status_code)

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The answer's JSON object (for answers the SDK has no model of)."""
        resp = self._request(method, path, **kwargs)
        try:
            data = resp.json()
        except ValueError as exc:
            data = exc
        if not isinstance(data, dict):
            raise APIError(
                f"the server at {self.url} sent an unexpected answer: {data!r:.200}",
                status_code=resp.status_code,
                code="BAD_RESPONSE",
            )
        return data

    def _items(self, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """The ``items`` of a ``GET`` list answer."""
        answer = self._json("GET", path, **kwargs)
        items = answer.get("items")
        if not isinstance(items, list):
            raise APIError(
                f"the server at {self.url} sent a list without items",
                status_code=200,
                code="BAD_RESPONSE",
            )
        return items

    def _parse(self, model: type[M], resp: httpx.Response) -> M:
        return self._validate(model, resp.content, resp.status_code)

    def _validate(self, model: type[M], content: bytes, status_code: int) -> M:
        try:
            return model.model_validate_json(content)
        except (ValueError, ValidationError) as exc:
            raise APIError(
                f"the server at {self.url} sent an unexpected answer: {exc}",
                status_code=status_code,
                code="BAD_RESPONSE",
            ) from exc

    def _close_transports(self) -> None:
        self._closed = True
        if self._fast is not None:
            self._fast.close()
        if self._http_client is not None:
            self._http_client.close()
