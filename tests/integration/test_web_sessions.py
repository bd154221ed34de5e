"""Web sessions (``service/sessions.py``) on a real database: a key is exchanged for a
signed, expiring value that holds no secret; a forged, expired or revoked one is refused."""

from __future__ import annotations

import pytest

from jobyard import errors
from jobyard.clock import ManualClock
from jobyard.domain.auth import Role
from jobyard.service.sessions import SESSION_TTL, SessionService
from tests.conftest import ServicesFactory


@pytest.fixture
def setup(make_services: ServicesFactory) -> tuple[SessionService, ManualClock, str, str]:
    clock = ManualClock()
    services = make_services(start=False, clock=clock, run_dispatcher=False)
    key, secret = services.auth.create_key(tenant_id="default", name="alice", role=Role.MEMBER)
    return SessionService(services.auth, clock, b"s" * 32), clock, secret, key.id


def test_a_session_names_the_key_but_holds_no_secret(
    setup: tuple[SessionService, ManualClock, str, str],
) -> None:
    sessions, _clock, secret, key_id = setup
    principal, session, value = sessions.sign_in(secret)
    assert principal.key_name == "alice" and session.key_id == key_id
    assert secret.split("_")[2] not in value
    read, again = sessions.read(value)
    assert read == principal and again == session
    sessions.check_csrf(session.nonce, sessions.csrf_token(session.nonce))


def test_bad_keys_forged_and_expired_sessions_are_refused(
    setup: tuple[SessionService, ManualClock, str, str],
) -> None:
    sessions, clock, secret, _ = setup
    for bad in ("", "jy_nope_nope", "jyt_job_secret", secret + "x"):
        with pytest.raises(errors.Unauthenticated):
            sessions.sign_in(bad)
    _, session, value = sessions.sign_in(secret)
    key_id, expiry, nonce, signature = value.split(".")
    for forged in (
        f"{key_id}.{int(expiry) + 86400}.{nonce}.{signature}",  # a longer life
        f"other.{expiry}.{nonce}.{signature}",  # another key
        value[:-2],
        "garbage",
        None,
    ):
        with pytest.raises(errors.Unauthenticated):
            sessions.read(forged)
    other = SessionService(sessions.auth, clock, b"t" * 32)  # another server's secret
    with pytest.raises(errors.Unauthenticated):
        other.read(value)
    with pytest.raises(errors.Forbidden):
        sessions.check_csrf(session.nonce, other.csrf_token(session.nonce))
    with pytest.raises(errors.Forbidden):
        sessions.check_csrf(session.nonce, None)
    clock.advance(SESSION_TTL.total_seconds() + 1)
    with pytest.raises(errors.Unauthenticated, match="expired"):
        sessions.read(value)


def test_revoking_the_key_ends_its_sessions(
    setup: tuple[SessionService, ManualClock, str, str],
) -> None:
    sessions, clock, secret, key_id = setup
    _, _, value = sessions.sign_in(secret)
    sessions.read(value)
    assert sessions.auth.store.revoke_key("default", key_id, clock.now())
    sessions.auth.forget_keys()
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        sessions.read(value)
