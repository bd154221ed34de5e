"""Signed webhook deliveries over HTTP(S), pinned to the address that passed the SSRF
check.

Each POST carries ``X-Jobyard-Signature: sha256=<hex>``, the HMAC-SHA256 with the
webhook's secret of ``"<X-Jobyard-Timestamp>.<raw body>"`` (see docs/how-to/notifications.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jobyard.notify import ssrf

USER_AGENT = "jobyard-webhooks"
MAX_RESPONSE_BYTES = 64 * 1024


class DeliveryError(Exception):
    """The receiver did not accept the delivery (transport error or non-2xx answer)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def encode(payload: Mapping[str, Any]) -> bytes:
    """The exact body bytes that are sent and signed."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _pinned_url(target: ssrf.Target, ip: str) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    path = target.url.path or "/"
    query = f"?{target.url.query}" if target.url.query else ""
    return f"{target.url.scheme.lower()}://{host}:{target.port}{path}{query}"


if TYPE_CHECKING:
    import httpx


def _post(
    target: ssrf.Target, ip: str, body: bytes, headers: dict[str, str], timeout: float
) -> int:
    import httpx

    https = target.url.scheme.lower() == "https"
    extensions = {"sni_hostname": target.host} if https else {}
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(timeout=httpx.Timeout(timeout), trust_env=False, follow_redirects=False) as c,
        c.stream(
            "POST", _pinned_url(target, ip), content=body, headers=headers, extensions=extensions
        ) as response,
    ):
        received = bytearray()
        for chunk in response.iter_raw():
            received += chunk
            if len(received) >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                break
    status = response.status_code
    if not 200 <= status < 300:
        text = " ".join(bytes(received[:200]).decode("utf-8", "replace").split())
        raise DeliveryError(f"HTTP {status}" + (f": {text}" if text else ""), status)
    return status


def deliver(
    url: str,
    payload: Mapping[str, Any],
    secret: bytes,
    allow: Sequence[str] = (),
    timeout: float = 10,
    *,
    delivery_id: str | None = None,
    timestamp: int | None = None,
) -> int:
    """POST ``payload`` as signed JSON to ``url``; returns the 2xx status.

    The request goes to an address that passed the SSRF check (the next one only when
    connecting fails), with the URL's ``Host`` and TLS server name. Raises
    :class:`jobyard.errors.InvalidInput` when the URL is (now) refused and
    :class:`DeliveryError` for a transport error or a non-2xx answer (redirects are not
    followed), so the caller can retry."""
    import httpx  # here, not at import: httpx loads rich, and the server does not need it idle

    target = ssrf.resolve(url, allow)
    body = encode(payload)
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Host": target.url.netloc,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
        "X-Jobyard-Event": str(payload.get("event", "")),
        "X-Jobyard-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Jobyard-Timestamp": str(ts),
        "X-Jobyard-Signature": sign(secret, ts, body),
    }
    error: httpx.HTTPError | None = None
    for ip in target.addresses:
        try:
            return _post(target, ip, body, headers, timeout)
        except httpx.ConnectError as e:
            error = e  # nothing was sent: try the next address
        except httpx.HTTPError as e:
            error = e
            break
    raise DeliveryError(f"{type(error).__name__}: {error}".rstrip(": ")) from error
