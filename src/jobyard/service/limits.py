"""Per-key request rate limits (a token bucket per API key, in this process)."""

from __future__ import annotations

import threading
import time

from jobyard import errors
from jobyard.settings import Settings
from jobyard.store.tenancy import TenancyStore


class RateLimiter:
    """``rate`` requests per second per key, bursts up to ``2 × rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, 2 * rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, last time)
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        """Take one token for ``key_id``; RateLimited (429, Retry-After) when none is left."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key_id] = (tokens, now)
                wait = (1 - tokens) / self.rate
                raise errors.RateLimited(
                    f"too many requests for this API key (limit {self.rate:g}/s);"
                    f" retry in {wait:.2f} s",
                    retry_after=max(1, round(wait + 0.5)),
                )
            self._buckets[key_id] = (tokens - 1, now)
            if len(self._buckets) > 100_000:
                self._buckets.clear()


class Quotas:
    """A tenant's limits: its own quota columns, else the server's defaults. A tenant's
    own values are read at most every ``CACHE_S`` seconds (they change rarely; every
    submit asks)."""

    CACHE_S = 5.0

    def __init__(self, store: TenancyStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._cache: dict[str, tuple[float, int, dict[str, int | None]]] = {}
        self._lock = threading.Lock()

    def _own(self, tenant_id: str) -> dict[str, int | None]:
        now, version = time.monotonic(), self.store.quota_version
        with self._lock:
            hit = self._cache.get(tenant_id)
            if hit is not None and hit[0] > now and hit[1] == version:
                return hit[2]
        values = self.store.quotas(tenant_id)
        with self._lock:
            self._cache[tenant_id] = (now + self.CACHE_S, version, values)
        return values

    def _limit(self, tenant_id: str, column: str, default: int | None) -> int | None:
        value = self._own(tenant_id).get(column)
        return value if value is not None else default

    def queued_check_is_free(self, tenant_id: str) -> bool:
        """Whether :meth:`check_queued` would read nothing from the database now: the
        tenant's own values are cached and no waiting-jobs quota applies."""
        hit = self._cache.get(tenant_id)
        if hit is None or hit[0] <= time.monotonic() or hit[1] != self.store.quota_version:
            return False
        own = hit[2].get("max_queued_jobs")
        return (own if own is not None else self.settings.max_queued_jobs_default) is None

    def queued_room(self, tenant_id: str) -> tuple[int, int] | None:
        """(how many more jobs the tenant may have waiting, its quota); None: no quota."""
        limit = self._limit(tenant_id, "max_queued_jobs", self.settings.max_queued_jobs_default)
        if limit is None:
            return None
        return max(0, limit - self.store.waiting_jobs(tenant_id)), limit

    def check_queued(self, tenant_id: str) -> None:
        limit = self._limit(tenant_id, "max_queued_jobs", self.settings.max_queued_jobs_default)
        if limit is not None and self.store.waiting_jobs(tenant_id) >= limit:
            raise queued_quota_exceeded(limit)

    def check_storage(self, tenant_id: str, adding: int) -> None:
        limit = self._limit(tenant_id, "max_storage_bytes", self.settings.max_storage_bytes_default)
        if limit is None:
            return
        used = self.store.storage_used(tenant_id)
        if used + adding > limit:
            raise errors.QuotaExceeded(
                f"the tenant's storage quota of {limit} bytes would be exceeded ({used} used);"
                " delete files or results first",
                quota="max_storage_bytes",
                limit=limit,
                used=used,
                retry_after=60,
            )

    def running_limit(self, tenant_id: str) -> int | None:
        return self._limit(tenant_id, "max_running_jobs", self.settings.max_running_jobs_default)

    def log_bytes(self, tenant_id: str) -> int:
        limit = self._limit(tenant_id, "max_log_bytes", self.settings.max_log_bytes_default)
        return limit if limit is not None else self.settings.max_log_bytes_default


def queued_quota_exceeded(limit: int) -> errors.QuotaExceeded:
    return errors.QuotaExceeded(
        f"the tenant already has {limit} waiting jobs (its quota); submit when some have run",
        quota="max_queued_jobs",
        limit=limit,
        retry_after=5,
    )
