"""API keys: creation, the first-start bootstrap, and authenticating a bearer key.

A key reads ``jy_<key id>_<secret>``: the key id is public and indexed, the secret
(about 238 bits) is stored only as its SHA-256 and compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import string
import threading
from datetime import datetime, timedelta

from jobyard import errors
from jobyard.clock import Clock
from jobyard.domain import states
from jobyard.domain.auth import ApiKey, Principal, Role, hash_secret, parse_job_token
from jobyard.domain.jobs import DEFAULT_TENANT_ID
from jobyard.store.auth import AuthStore
from jobyard.store.tracking import TrackingStore

KEY_PREFIX = "jy"
_ALPHABET = string.ascii_letters + string.digits
_ID_LEN = 12
_SECRET_LEN = 40
#: ``last_used_at`` is written at most this often per key (a write per request is costly)
TOUCH_INTERVAL = timedelta(seconds=60)
#: how long a key read from the database is trusted without reading it again. Revoking
#: a key or deactivating a tenant takes effect at once in the process that did it, and
#: within this time in the other replicas.
KEY_CACHE = timedelta(seconds=5)


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def parse_key(raw: str) -> tuple[str, str]:
    """Split ``jy_<id>_<secret>``; raises Unauthenticated when it is not a jobyard key."""
    parts = raw.strip().split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        raise errors.Unauthenticated("the API key is malformed (expected jy_<id>_<secret>)")
    return parts[1], parts[2]


class AuthService:
    def __init__(self, store: AuthStore, clock: Clock, tracking: TrackingStore) -> None:
        self.store = store
        self.clock = clock
        self.tracking = tracking
        self._touched: dict[str, datetime] = {}
        self._lock = threading.Lock()
        #: key id → (when the entry expires, key, its tenant is active)
        self._keys: dict[str, tuple[datetime, ApiKey, bool]] = {}
        self._generation = 0  #: bumped by :meth:`forget_keys`

    def create_key(
        self,
        *,
        tenant_id: str,
        name: str,
        role: Role,
        expires_at: datetime | None = None,
        project_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it with the full secret key string (shown once)."""
        key_id, secret = _random(_ID_LEN), _random(_SECRET_LEN)
        key = ApiKey(
            id=key_id,
            tenant_id=tenant_id,
            name=name,
            role=role,
            secret_hash=hash_secret(secret),
            created_at=self.clock.now(),
            last_used_at=None,
            expires_at=expires_at,
            revoked_at=None,
            project_id=project_id,
        )
        self.store.insert_key(key)
        return key, f"{KEY_PREFIX}_{key_id}_{secret}"

    def bootstrap(self) -> str | None:
        """On first start: the default tenant and an admin key. Returns the new key's
        secret, or None when keys already exist."""
        now = self.clock.now()
        self.store.ensure_tenant(DEFAULT_TENANT_ID, "Default tenant", now)
        if self.store.count_keys() > 0:
            return None
        _key, secret = self.create_key(
            tenant_id=DEFAULT_TENANT_ID, name="admin", role=Role.SUPERUSER
        )
        return secret

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <key>`` header value."""
        raw = _bearer(authorization)
        job_token = parse_job_token(raw)
        if job_token is not None:
            return self._job_principal(*job_token)
        key_id, secret = parse_key(raw)
        generation = self._generation
        now = self.clock.now()
        found = self.store.get_active_key(key_id)
        if found is not None:
            with self._lock:  # not a row read before a revocation that came since
                if generation == self._generation:
                    if len(self._keys) > 10_000:
                        self._keys.clear()
                    self._keys[key_id] = (now + KEY_CACHE, *found)
        key, tenant_active = found if found else (None, False)
        principal = _check_key(key, tenant_active, secret, now)
        self._touch(principal.key_id, now)
        return principal

    def cached(self, authorization: str | None) -> Principal | None:
        """:meth:`authenticate` from the keys read in the last ``KEY_CACHE``,
        without touching the database; None when that needs the database (a key not
        cached, a job token, a ``last_used_at`` due to be written)."""
        raw = _bearer(authorization)
        if parse_job_token(raw) is not None:
            return None
        key_id, secret = parse_key(raw)
        entry = self._keys.get(key_id)
        now = self.clock.now()
        if entry is None or entry[0] <= now:
            return None
        last = self._touched.get(key_id)
        if last is None or now - last >= TOUCH_INTERVAL:
            return None
        return _check_key(entry[1], entry[2], secret, now)

    def was_cached(self, authorization: str | None) -> bool:
        """Whether this header names a key :meth:`cached` knew (its entry may be due to
        be read again): worth :meth:`authenticate` on the submit's fast path too."""
        try:
            raw = _bearer(authorization)
            return parse_job_token(raw) is None and parse_key(raw)[0] in self._keys
        except errors.Unauthenticated:
            return False

    def key_principal(self, key_id: str) -> Principal:
        """The principal of a key whose secret was checked before (a web session opened
        with it): refused once the key is revoked or expired or its tenant deactivated,
        like the key itself (read through the same 5-second cache)."""
        now = self.clock.now()
        entry = self._keys.get(key_id)
        if entry is not None and entry[0] > now:
            key, tenant_active = entry[1], entry[2]
        else:
            generation = self._generation
            found = self.store.get_active_key(key_id)
            if found is None:
                raise errors.Unauthenticated("the API key of this session no longer exists")
            with self._lock:
                if generation == self._generation:
                    self._keys[key_id] = (now + KEY_CACHE, *found)
            key, tenant_active = found
        return _usable(key, tenant_active, now)

    def forget_keys(self) -> None:
        """Drop the cached keys (after a key is revoked or a tenant changed)."""
        with self._lock:
            self._keys.clear()
            self._generation += 1

    def _job_principal(self, job_id: str, secret: str) -> Principal:
        """A job token is valid while its job runs, for that job only."""
        found = self.tracking.token_hash(job_id)
        if (
            found is None
            or found[2] is None
            or not hmac.compare_digest(found[2], hash_secret(secret))
        ):
            raise errors.Unauthenticated(
                "the job token is not valid (a job token is valid for its attempt only)"
            )
        tenant_id, state, _, epoch = found
        if state not in {s.value for s in states.ACTIVE}:
            raise errors.Unauthenticated("the job token has expired: its job has ended")
        return Principal(
            tenant_id=tenant_id,
            key_id=f"job:{job_id}",
            key_name=f"job {job_id}",
            role=Role.MEMBER,
            job_id=job_id,
            job_epoch=epoch,
        )

    def _touch(self, key_id: str, now: datetime) -> None:
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < TOUCH_INTERVAL:
                return
            self._touched[key_id] = now
        self.store.touch_key(key_id, now)


def _bearer(authorization: str | None) -> str:
    """The credential of an ``Authorization: Bearer …`` header value."""
    if not authorization:
        raise errors.Unauthenticated()
    scheme, _, raw = authorization.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise errors.Unauthenticated("use the header Authorization: Bearer <api key>")
    return raw.strip()


def _check_key(key: ApiKey | None, tenant_active: bool, secret: str, now: datetime) -> Principal:
    """The principal of a key whose secret matches and that may be used now."""
    if key is None or not hmac.compare_digest(key.secret_hash, hash_secret(secret)):
        raise errors.Unauthenticated("the API key is not valid")
    return _usable(key, tenant_active, now)


def _usable(key: ApiKey, tenant_active: bool, now: datetime) -> Principal:
    """The principal of a key that may be used now."""
    if key.revoked_at is not None:
        raise errors.Unauthenticated("the API key has been revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise errors.Unauthenticated("the API key has expired")
    if not tenant_active:
        raise errors.Unauthenticated("the API key's tenant is deactivated")
    return Principal(
        tenant_id=key.tenant_id,
        key_id=key.id,
        key_name=key.name,
        role=key.role,
        project_id=key.project_id,
    )
