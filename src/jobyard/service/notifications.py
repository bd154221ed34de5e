"""Job notifications: validate a job's spec at submission; once the job has ended, plan
one delivery per webhook and per email address, send them, retry with backoff.

A background thread (:meth:`NotificationService.start`) calls :meth:`tick` every
``interval_s`` when there can be something to do (:meth:`NotificationService.wanted`),
else every ``FALLBACK_ROUNDS`` intervals; tests call :meth:`tick` directly with a manual
clock. Planning is a compare-and-set on ``jobs.notified_at`` and sending claims each
delivery for a lease, so several replicas never plan or send the same notification twice.
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import secrets
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jobyard import errors, notify
from jobyard.clock import Clock
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job
from jobyard.notify import email, webhook
from jobyard.service.periodic import Periodic
from jobyard.settings import Settings
from jobyard.store.jobs import JobStore
from jobyard.store.notifications import Delivery, NotificationStore

log = logging.getLogger("jobyard.notify")

MAX_ATTEMPTS = 5
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
JITTER = 0.2
CLAIM_BATCH = 10  #: deliveries claimed at a time (each claim holds a lease)
MAX_PER_TICK = 100
#: with nothing ended in this process and none of its retries due, a round runs only
#: every this many intervals: it finds what other processes left (the jobs ended by one
#: that died before planning them, the deliveries of a sender that died)
FALLBACK_ROUNDS = 10


class _Permanent(Exception):
    """A delivery that cannot succeed by retrying."""


@dataclass(frozen=True, kw_only=True)
class NotifyConfig:
    """What the notification sender needs from the settings."""

    api_url: str
    webhook_secret: bytes = field(repr=False)
    webhook_allow: tuple[str, ...] = ()
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "jobyard@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    interval_s: float = 1.0
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyConfig:
        def get(name: str, default: Any = None) -> Any:
            return getattr(settings, name, default)

        secret = get("webhook_secret")
        return cls(
            api_url=settings.api_url,
            webhook_secret=secret.encode() if secret else load_or_create_secret(settings.data_dir),
            webhook_allow=split_allow(get("webhook_allow", "")),
            smtp_host=get("smtp_host"),
            smtp_port=int(get("smtp_port", 25)),
            smtp_from=get("smtp_from", "jobyard@localhost"),
            smtp_starttls=bool(get("smtp_starttls", False)),
            smtp_username=get("smtp_username"),
            smtp_password=get("smtp_password"),
            interval_s=float(get("notify_interval_s", 1.0)),
        )


def split_allow(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``JOBYARD_WEBHOOK_ALLOW``: comma-separated CIDR ranges or host names."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return tuple(i.strip() for i in items if i.strip())


def load_or_create_secret(data_dir: Path, name: str = "webhook_secret") -> bytes:
    """A server secret, generated once into ``<data_dir>/<name>`` (mode 0600; the
    webhook signing secret by default); its UTF-8 text is the HMAC key."""
    path = Path(data_dir) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # atomic: the first of several starting processes wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_text().strip()
    if not secret:
        raise ValueError(f"{path} is empty: delete it or set JOBYARD_{name.upper()}")
    return secret.encode()


class DeliveryLog:
    """The delivery log of jobs' notifications as their users see it (``GET
    /v1/jobs/{id}/notifications``)."""

    def __init__(self, store: NotificationStore, get_job: Callable[[Principal, str], Job]) -> None:
        self.store = store
        self.get_job = get_job  #: raises NotFound unless the principal may see the job

    def of_job(self, principal: Principal, job_id: str) -> list[Delivery]:
        """The deliveries of one of the principal's jobs, targets as shown to users."""
        self.get_job(principal, job_id)
        items = self.store.list_for_job(principal.tenant_id, job_id)
        return [replace(d, target=notify.shown_target(d.channel, d.target)) for d in items]


def backoff_s(attempts: int, rng: random.Random) -> float:
    """Delay after the ``attempts``-th failed attempt: 2 s doubling, ±20 %, ≤ 5 min."""
    base = BACKOFF_BASE_S * 2.0 ** (attempts - 1)
    return min(BACKOFF_CAP_S, base * (1 + JITTER * (2 * rng.random() - 1)))


# ---- the service ----------------------------------------------------------------
class NotificationService(Periodic):
    """Plans and sends notifications; :meth:`tick` does one round."""

    name = "notify"
    #: ended jobs looked at per round for a notification spec (those without are marked)
    plan_batch = 500

    def __init__(
        self,
        store: NotificationStore,
        jobs: JobStore,
        clock: Clock,
        settings: Settings | NotifyConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self.config = (
            settings if isinstance(settings, NotifyConfig) else NotifyConfig.from_settings(settings)
        )
        self.rng = rng or random.SystemRandom()
        self._ends_seen = -1  #: ``store.ends_committed()`` before the last whole round
        self._busy = False  #: the last round planned or sent something
        self._retries: list[datetime] = []  #: heap: when this sender's retries come due
        self._idle_rounds = 0  #: intervals skipped since the last round
        super().__init__(self.config.interval_s)

    def validate(self, spec: Any) -> dict[str, Any]:
        """The normalised spec of a submission (InvalidInput → 422)."""
        return notify.validate_spec(spec, self.config.webhook_allow)

    def tick(self) -> None:
        """One round: plan the ended jobs' deliveries, send the due ones."""
        ends, now = self.store.ends_committed(), self.clock.now()
        self._busy = True  # until the round is done: one that failed runs again
        planned = self.plan_ended()
        sent = self.deliver_due()
        while self._retries and self._retries[0] <= now:  # tried now (or by others)
            heapq.heappop(self._retries)
        self._ends_seen = ends
        self._busy = bool(planned or sent)

    def wanted(self) -> bool:
        """Whether the thread's round may find something (else it reads nothing): a
        job ended in this process since the last round, the last round was busy, a retry
        of this sender is due, or ``FALLBACK_ROUNDS`` intervals passed without a round."""
        self._idle_rounds += 1
        if (
            self._busy
            or self.store.ends_committed() != self._ends_seen
            or (self._retries and self._retries[0] <= self.clock.now())
            or self._idle_rounds >= FALLBACK_ROUNDS
        ):
            self._idle_rounds = 0
            return True
        return False

    def plan_ended(self) -> int:
        """Plan the deliveries of ended jobs not yet notified; returns the jobs planned."""
        now = self.clock.now()
        silent, some_to_notify = self.store.unnotified(self.plan_batch)
        self.store.mark_silent(now, ids=silent)
        planned = 0
        if some_to_notify:  # else ended jobs without notifications only: no read
            for job in self.store.jobs_to_notify():
                planned += self.store.plan(job, self.deliveries_for(job), now)
        return planned

    def deliveries_for(self, job: Job) -> list[dict[str, Any]]:
        """One delivery per webhook and email address, if the end state is wanted."""
        spec = job.spec.notifications
        if not notify.wanted(spec, job.state.value):
            return []
        payload = notify.event_payload(job)
        base = {"event": payload["event"], "payload": payload}
        hooks = [
            {**base, "channel": "webhook", "target": h["url"]} for h in notify.webhooks_of(spec)
        ]
        return hooks + [{**base, "channel": "email", "target": e} for e in notify.emails_of(spec)]

    def deliver_due(self) -> int:
        """Send the deliveries that are due; returns how many were attempted."""
        done = 0
        lease = timedelta(seconds=CLAIM_BATCH * 3 * self.config.timeout_s + 30)
        while done < MAX_PER_TICK:
            now = self.clock.now()
            batch = self.store.claim_due(now, CLAIM_BATCH, now + lease)
            for delivery in batch:
                self._attempt(delivery)
            done += len(batch)
            if len(batch) < CLAIM_BATCH:
                break
        return done

    def _attempt(self, d: Delivery) -> None:
        now = self.clock.now()
        code: int | None = None
        try:
            code = self._send(d, now)
        except errors.StoreUnavailable:
            raise  # not the receiver's fault: the claim runs out and it is tried again
        except (errors.InvalidInput, _Permanent) as e:
            error = f"refused: {getattr(e, 'message', e)}"
            self.store.record_attempt(d.id, False, None, error, None, now, lease=d.next_attempt_at)
            return
        except Exception as e:
            if isinstance(e, webhook.DeliveryError):
                code = e.status_code
            elif not isinstance(e, smtplib.SMTPException | OSError):
                log.exception("notification %s failed", d.id)
            attempts = d.attempts + 1
            again = None
            if attempts < MAX_ATTEMPTS:
                again = now + timedelta(seconds=backoff_s(attempts, self.rng))
                heapq.heappush(self._retries, again)
            error = (str(e) or type(e).__name__)[:1000]
            self.store.record_attempt(d.id, False, code, error, again, now, lease=d.next_attempt_at)
            return
        self.store.record_attempt(d.id, True, code, None, None, now, lease=d.next_attempt_at)

    def _send(self, d: Delivery, now: datetime) -> int | None:
        body = {**d.payload, "sent_at": now.isoformat()}
        cfg = self.config
        if d.channel == "webhook":
            return webhook.deliver(
                d.target,
                body,
                self._secret_for(d),
                cfg.webhook_allow,
                cfg.timeout_s,
                delivery_id=d.id,
                timestamp=int(now.timestamp()),
            )
        if not cfg.smtp_host:
            raise _Permanent("no SMTP server is configured (JOBYARD_SMTP_HOST)")
        subject, text = notify.email_text(body, cfg.api_url)
        email.send(
            cfg.smtp_host,
            cfg.smtp_port,
            cfg.smtp_from,
            [d.target],
            subject,
            text,
            starttls=cfg.smtp_starttls,
            username=cfg.smtp_username,
            password=cfg.smtp_password,
            timeout=cfg.timeout_s,
        )
        return None

    def _secret_for(self, d: Delivery) -> bytes:
        job = self.jobs.get_unscoped(d.job_id)
        for hook in notify.webhooks_of(job.spec.notifications if job else None):
            if hook["url"] == d.target and hook.get("secret"):
                return str(hook["secret"]).encode()
        return self.config.webhook_secret
