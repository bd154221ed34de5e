"""Outbound notifications: what a job's notification spec may say, what the messages
look like, and the channels: signed webhooks (``webhook``), SMTP email (``email``) and
the SSRF guard for webhook URLs (``ssrf``). No database here: the service layer decides
when to send (``service/notifications.py``).

A spec (``jobs.notifications``)::

    {"webhooks": [{"url": "https://…", "secret": "optional"}],
     "emails": ["a@example.com"],
     "on": ["succeeded", "failed", "timed_out", "cancelled"]}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jobyard import errors
from jobyard.domain.jobs import Job
from jobyard.notify import ssrf

EVENTS = ("succeeded", "failed", "timed_out", "cancelled")
MAX_WEBHOOKS = 10
MAX_EMAILS = 20
MAX_SECRET_LENGTH = 1024
MAX_MESSAGE_CHARS = 4000
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})*$")
_WORDS = {"succeeded": "succeeded", "failed": "failed", "timed_out": "timed out"}


# ---- the spec -------------------------------------------------------------------
def _bad(field: str, why: str) -> errors.InvalidInput:
    return errors.InvalidInput(f"{field}: {why}", field=field)


def _list(raw: Mapping[str, Any], key: str, limit: int) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"notifications.{key}", "must be a list")
    if len(value) > limit:
        raise _bad(f"notifications.{key}", f"at most {limit} entries")
    return value


def _webhook(i: int, item: Any, allow: Sequence[str]) -> dict[str, str]:
    where = f"notifications.webhooks[{i}]"
    if isinstance(item, str):
        item = {"url": item}
    if not isinstance(item, Mapping) or set(item) - {"url", "secret"}:
        raise _bad(where, 'must be {"url": …, "secret": … (optional)}')
    url, secret = item.get("url"), item.get("secret")
    if not isinstance(url, str):
        raise _bad(f"{where}.url", "a URL is required")
    ssrf.check_url(url, allow, field=f"{where}.url")
    out = {"url": url}
    if secret is not None:
        if not isinstance(secret, str) or not 0 < len(secret) <= MAX_SECRET_LENGTH:
            raise _bad(f"{where}.secret", f"a string of 1 to {MAX_SECRET_LENGTH} characters")
        out["secret"] = secret
    return out


def validate_spec(raw: Any, allow: Sequence[str] = ()) -> dict[str, Any]:
    """The normalised spec of a submission (``on`` defaults to every end state,
    duplicates are dropped); raises InvalidInput naming the offending field, e.g.
    ``notifications.webhooks[0].url`` for a URL the SSRF guard refuses."""
    if not isinstance(raw, Mapping):
        raise _bad("notifications", "must be an object")
    if unknown := sorted(set(map(str, raw)) - {"webhooks", "emails", "on"}):
        raise _bad("notifications", f"unknown field(s): {', '.join(unknown)}")
    hooks: dict[str, dict[str, str]] = {}
    for i, item in enumerate(_list(raw, "webhooks", MAX_WEBHOOKS)):
        hook = _webhook(i, item, allow)
        hooks.setdefault(hook["url"], hook)
    emails: dict[str, str] = {}
    for i, addr in enumerate(_list(raw, "emails", MAX_EMAILS)):
        if not isinstance(addr, str) or len(addr) > 254 or not EMAIL.match(addr):
            raise _bad(f"notifications.emails[{i}]", "must be an address like name@example.com")
        emails.setdefault(addr.lower(), addr)
    on = raw.get("on")
    if on is None:
        on = list(EVENTS)
    if not isinstance(on, list) or any(e not in EVENTS for e in on):
        raise _bad("notifications.on", f"must be a list of: {', '.join(EVENTS)}")
    on = [e for e in EVENTS if e in on]
    return {"webhooks": list(hooks.values()), "emails": list(emails.values()), "on": on}


def compat_spec(on_completion: bool, on_failure: bool, emails: Sequence[str]) -> dict[str, Any]:
    """A spec from the ``onCompletion``/``onFailure``/``emailRecipients`` form (spec 001):
    completion is success; failure is failed or timed out."""
    on = ["succeeded"] if on_completion else []
    on += ["failed", "timed_out"] if on_failure else []
    return {"emails": list(emails), "on": on}


def webhooks_of(spec: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The webhook entries of a stored spec (tolerant of older shapes)."""
    items = (spec or {}).get("webhooks") or []
    out = [{"url": i} if isinstance(i, str) else i for i in items]
    return [i for i in out if isinstance(i, Mapping) and isinstance(i.get("url"), str)]


def emails_of(spec: Mapping[str, Any] | None) -> list[str]:
    return [e for e in (spec or {}).get("emails") or [] if isinstance(e, str)]


def wanted(spec: Mapping[str, Any] | None, state: str) -> bool:
    """Whether a job that ended in ``state`` is to be notified under ``spec``."""
    on = (spec or {}).get("on")
    return state in (EVENTS if on is None else on)


# ---- messages -------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def event_payload(job: Job) -> dict[str, Any]:
    """The body of the notification of ``job``'s end (``sent_at`` is added on sending)."""
    return {
        "event": f"job.{job.state.value}",
        "job": {
            "id": job.id,
            "name": job.spec.name,
            "status": job.state.value,
            "priority": job.spec.priority.value,
            "exit_code": job.exit_code,
            "error_type": job.error_type,
            "message": (job.message or "")[:MAX_MESSAGE_CHARS] or None,
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "ended_at": _iso(job.ended_at),
            "attempt": job.attempt,
            "submitted_by": job.spec.submitted_by,
            "model_version_id": job.spec.model_version_id,
        },
    }


def email_text(payload: Mapping[str, Any], api_url: str) -> tuple[str, str]:
    """(subject, plain-text body) of the email for an event payload."""
    job = payload["job"]
    label = " ".join(str(job.get("name") or job["id"]).split())[:100]
    status = str(job["status"])
    word = _WORDS.get(status, f"was {status}")
    lines = [f"Job {label} ({job['id']}) {word}.", ""]
    for key in ("status", "exit_code", "error_type", "attempt", "started_at", "ended_at"):
        if job.get(key) is not None:
            lines.append(f"{key.replace('_', ' ').capitalize()}: {job[key]}")
    if job.get("message"):
        lines += ["", "Message:", str(job["message"])]
    lines += ["", f"Details: {api_url}/v1/jobs/{job['id']}"]
    return f"[jobyard] job {label} {word}", "\n".join(lines) + "\n"


def shown_target(channel: str, target: str) -> str:
    """A target as the delivery log shows it: webhook URLs without query or fragment
    (where tokens tend to live)."""
    if channel != "webhook":
        return target
    parts = urlsplit(target)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
