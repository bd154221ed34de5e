"""Web sessions: an API key exchanged for a signed, expiring session value.

The browser keeps only ``<key id>.<expiry>.<nonce>.<signature>`` (HMAC-SHA256 with the
server's secret, ``<data_dir>/web_secret``): never the key's secret. Every request reads
the key again (through the auth cache), so revoking the key, its expiry or a deactivated
tenant ends its sessions too. CSRF tokens are derived from the session's nonce; the
sign-in form, which has no session yet, uses a nonce of its own (double submit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jobyard import errors
from jobyard.clock import Clock
from jobyard.domain.auth import Principal
from jobyard.service.auth import AuthService

#: how long a session lasts after sign-in
SESSION_TTL = timedelta(hours=12)


@dataclass(frozen=True)
class Session:
    key_id: str
    expires_at: datetime
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SessionService:
    def __init__(
        self, auth: AuthService, clock: Clock, secret: bytes, ttl: timedelta = SESSION_TTL
    ) -> None:
        self.auth = auth
        self.clock = clock
        self._secret = hashlib.sha256(b"jobyard web sessions\0" + secret).digest()
        self.ttl = ttl

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._secret, text.encode(), hashlib.sha256).digest())

    def sign_in(self, raw_key: str) -> tuple[Principal, Session, str]:
        """Check an API key (job tokens are refused); returns its principal, the new
        session and the value of its cookie."""
        raw = raw_key.strip()
        if not raw:
            raise errors.Unauthenticated("enter an API key (jy_<id>_<secret>)")
        if raw.startswith("jyt_"):
            raise errors.Unauthenticated("a job token cannot sign in; use an API key")
        principal = self.auth.authenticate(f"Bearer {raw}")
        expires = self.clock.now() + self.ttl
        session = Session(principal.key_id, expires, secrets.token_urlsafe(16))
        return principal, session, self.encode(session)

    def encode(self, session: Session) -> str:
        body = f"{session.key_id}.{int(session.expires_at.timestamp())}.{session.nonce}"
        return f"{body}.{self._sign(body)}"

    def read(self, value: str | None) -> tuple[Principal, Session]:
        """The principal and session of a cookie value; Unauthenticated when it is
        missing, forged, expired or its key can no longer be used."""
        if not value:
            raise errors.Unauthenticated("sign in first")
        parts = value.split(".")
        if len(parts) != 4:
            raise errors.Unauthenticated("the session is not valid; sign in again")
        key_id, expiry, nonce, signature = parts
        if not hmac.compare_digest(signature, self._sign(f"{key_id}.{expiry}.{nonce}")):
            raise errors.Unauthenticated("the session is not valid; sign in again")
        expires_at = datetime.fromtimestamp(int(expiry), UTC)
        if expires_at <= self.clock.now():
            raise errors.Unauthenticated("the session has expired; sign in again")
        return self.auth.key_principal(key_id), Session(key_id, expires_at, nonce)

    def csrf_token(self, nonce: str) -> str:
        """The CSRF token of forms of the session (or sign-in form) with this nonce."""
        return self._sign(f"csrf:{nonce}")

    def check_csrf(self, nonce: str | None, token: str | None) -> None:
        if not nonce or not token or not hmac.compare_digest(token, self.csrf_token(nonce)):
            raise errors.Forbidden(
                "the form's CSRF token is missing or wrong; reload the page and try again"
            )
