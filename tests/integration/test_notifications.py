"""Job notifications: signed webhooks to a real HTTP server on loopback, email to a real
SMTP server, retries driven by a manual clock, planning once across replicas, the
delivery log over HTTP."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from jobyard import errors, notify
from jobyard.clock import ManualClock
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import Job, JobSpec
from jobyard.domain.states import JobState
from jobyard.notify import webhook
from jobyard.service.notifications import (
    FALLBACK_ROUNDS,
    NotificationService,
    NotifyConfig,
    load_or_create_secret,
)
from jobyard.settings import Settings
from jobyard.store.notifications import Delivery, NotificationStore
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory, wait_for

ADMIN = Principal(tenant_id="default", key_id="k", key_name="t", role=Role.ADMIN)
SERVER_SECRET = b"server-secret"
LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST, answers the scripted statuses
    (then 200)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answers: list[int] = []
        self.answer_body = b"ok"
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.requests.append(Request(self.path, headers, body))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(receiver.answer_body)))
                self.end_headers()
                self.wfile.write(receiver.answer_body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Inbox:
    """aiosmtpd handler keeping every message with its envelope."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="localhost")
    controller.start()
    yield inbox, port
    controller.stop()


def make_service(services: Services, **config: Any) -> NotificationService:
    values: dict[str, Any] = {
        "api_url": "http://jobyard.test",
        "webhook_secret": SERVER_SECRET,
        "webhook_allow": LOOPBACK,
        "timeout_s": 5.0,
        **config,
    }
    store = NotificationStore(services.db)
    return NotificationService(store, services.jobs.store, services.clock, NotifyConfig(**values))


def ended_job(
    services: Services, notifications: dict[str, Any] | None, state: JobState = JobState.FAILED
) -> Job:
    """A job moved through the state table to ``state`` by hand (no process runs)."""
    store, now = services.jobs.store, services.clock.now()
    spec = JobSpec(entrypoint="true", name="nightly report", notifications=notifications)
    job, _ = store.insert(
        tenant_id="default",
        spec=spec,
        state=JobState.QUEUED,
        sort_key=0,
        now=now,
        request_hash=None,
        message="t",
    )
    if state is JobState.CANCELLED:
        return store.transition(job, state, now=now, message="Cancelled.")
    job = store.transition(job, JobState.STARTING, now=now, message="s", values={"attempt": 1})
    job = store.transition(job, JobState.RUNNING, now=now, message="r", values={"started_at": now})
    exit_code = 3 if state is JobState.FAILED else 0
    return store.transition(
        job, state, now=now, message="It ended.", values={"exit_code": exit_code}
    )


def log_of(services: Services, job: Job) -> list[Delivery]:
    return NotificationStore(services.db).list_for_job(job.tenant_id, job.id)


def assert_signed(req: Request, secret: bytes) -> None:
    ts = req.headers["x-jobyard-timestamp"]
    mac = hmac.new(secret, f"{ts}.".encode() + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-jobyard-signature"], f"sha256={mac}")


# ---- end to end -------------------------------------------------------------------
def test_a_real_job_that_fails_sends_signed_webhooks(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    services = make_services(start=False)
    assert services.dispatcher is not None
    services.dispatcher.start()  # jobs run; no notifier of the services's own runs meanwhile
    svc = make_service(services)
    spec = svc.validate(
        {
            "webhooks": [
                {"url": f"{receiver.url}/a", "secret": "per-hook"},
                {"url": f"{receiver.url}/b?token=x"},
            ]
        }
    )
    job, _ = services.jobs.submit(
        ADMIN,
        JobSpec(
            argv=(sys.executable, "-c", "import sys; sys.exit(3)"), name="n", notifications=spec
        ),
    )
    done = wait_for(lambda: (j := services.jobs.get(ADMIN, job.id)).is_terminal and j, timeout=30)
    assert done.state is JobState.FAILED
    svc.tick()

    by_path = {r.path: r for r in receiver.requests}
    assert set(by_path) == {"/a", "/b?token=x"}
    assert_signed(by_path["/a"], b"per-hook")
    assert_signed(by_path["/b?token=x"], SERVER_SECRET)
    deliveries = {d.target: d for d in log_of(services, job)}
    for path, req in by_path.items():
        assert req.headers["content-type"] == "application/json"
        assert req.headers["user-agent"] == "jobyard-webhooks"
        assert req.headers["x-jobyard-event"] == "job.failed"
        assert req.headers["host"] == f"127.0.0.1:{receiver.port}"
        d = deliveries[receiver.url + path]
        assert req.headers["x-jobyard-delivery"] == d.id
        assert (d.status, d.attempts, d.response_status) == ("delivered", 1, 200)
        body = req.json()
        assert body["event"] == "job.failed" and body["sent_at"]
        assert body["job"]["id"] == job.id
        assert body["job"]["name"] == "n"
        assert body["job"]["status"] == "failed"
        assert body["job"]["exit_code"] == 3
        assert body["job"]["attempt"] == 1
        assert body["job"]["submitted_by"] == "t"
        assert body["job"]["ended_at"] is not None
    assert services.jobs.get(ADMIN, job.id).notified_at is not None
    svc.tick()
    assert len(receiver.requests) == 2  # planned once, sent once


def test_the_background_thread_sends(make_services: ServicesFactory, receiver: Receiver) -> None:
    services = make_services(start=False)
    svc = make_service(services, interval_s=0.05)
    svc.start()
    try:
        job = ended_job(services, {"webhooks": [{"url": f"{receiver.url}/hook"}]})
        wait_for(lambda: [d.status for d in log_of(services, job)] == ["delivered"])
    finally:
        svc.stop()
    assert len(receiver.requests) == 1


def test_the_thread_reads_nothing_until_something_ended_here(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    services = make_services(start=False, clock=ManualClock())
    svc = make_service(services)
    svc.tick()  # a round that finds nothing
    assert [svc.wanted() for _ in range(FALLBACK_ROUNDS)] == [False] * (FALLBACK_ROUNDS - 1) + [
        True
    ]  # only the fallback round
    ended_job(services, {"webhooks": [{"url": f"{receiver.url}/hook"}]})
    assert svc.wanted()  # this process ended a job
    svc.tick()
    assert svc.wanted()  # that round sent something: the next one looks again
    svc.tick()
    assert not svc.wanted()
    assert len(receiver.requests) == 1


def test_a_job_ended_by_another_process_is_notified_by_the_fallback_round(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    first = make_services(start=False, clock=ManualClock())
    second = make_services(start=False, clock=first.clock)  # its own database handle
    svc = make_service(second)
    svc.tick()
    job = ended_job(first, {"webhooks": [{"url": f"{receiver.url}/hook"}]})
    rounds = [svc.wanted() for _ in range(FALLBACK_ROUNDS)]
    assert rounds == [False] * (FALLBACK_ROUNDS - 1) + [True]  # no hint from the other
    svc.tick()
    assert [d.status for d in log_of(second, job)] == ["delivered"]
    assert len(receiver.requests) == 1


# ---- retries --------------------------------------------------------------------
def test_a_retry_of_this_sender_wakes_the_thread_when_due(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    clock = ManualClock()
    services = make_services(start=False, clock=clock)
    svc = make_service(services)
    ended_job(services, {"webhooks": [{"url": f"{receiver.url}/hook"}]})
    receiver.answers = [500]
    svc.tick()
    svc.tick()  # nothing due yet: idle
    assert not svc.wanted()
    clock.advance(2.5)  # past the backoff (2 s ± 20 %)
    assert svc.wanted()
    svc.tick()
    assert len(receiver.requests) == 2


def test_a_failed_delivery_is_retried_after_the_backoff(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    clock = ManualClock()
    services = make_services(start=False, clock=clock)
    svc = make_service(services)
    job = ended_job(services, {"webhooks": [{"url": f"{receiver.url}/hook"}]})
    receiver.answers = [500]
    svc.tick()
    assert len(receiver.requests) == 1
    (d,) = log_of(services, job)
    assert (d.status, d.attempts, d.response_status) == ("pending", 1, 500)
    assert d.last_error is not None and "HTTP 500" in d.last_error
    assert d.next_attempt_at is not None
    wait_s = (d.next_attempt_at - clock.now()).total_seconds()
    assert 1.6 <= wait_s <= 2.4  # 2 s ± 20 %

    clock.advance(1.5)
    svc.tick()
    assert len(receiver.requests) == 1  # not before the backoff
    clock.advance(1.0)
    svc.tick()
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.headers["x-jobyard-delivery"] == second.headers["x-jobyard-delivery"] == d.id
    assert_signed(second, SERVER_SECRET)
    (d,) = log_of(services, job)
    assert (d.status, d.attempts, d.response_status) == ("delivered", 2, 200)
    assert d.next_attempt_at is None


def test_a_delivery_fails_for_good_after_five_attempts(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    clock = ManualClock()
    services = make_services(start=False, clock=clock)
    svc = make_service(services)
    job = ended_job(services, {"webhooks": [{"url": f"{receiver.url}/hook"}]})
    receiver.answers = [503] * 10
    for _ in range(7):
        svc.tick()
        clock.advance(301)
    assert len(receiver.requests) == 5
    (d,) = log_of(services, job)
    assert (d.status, d.attempts, d.response_status) == ("failed", 5, 503)
    assert d.last_error is not None and "HTTP 503" in d.last_error
    assert d.next_attempt_at is None


def test_a_url_refused_at_delivery_fails_without_a_request(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    services = make_services(start=False, clock=ManualClock())
    svc = make_service(services, webhook_allow=())  # loopback is no longer allowed
    job = ended_job(services, {"webhooks": [{"url": f"{receiver.url}/hook"}]})
    svc.tick()
    assert receiver.requests == []
    (d,) = log_of(services, job)
    assert (d.status, d.attempts) == ("failed", 1)
    assert d.last_error is not None and "refused" in d.last_error and "127.0.0.1" in d.last_error


# ---- email ----------------------------------------------------------------------
def test_email_reaches_a_real_smtp_server(
    make_services: ServicesFactory, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    services = make_services(start=False, clock=ManualClock())
    svc = make_service(services, smtp_host="127.0.0.1", smtp_port=port, smtp_from="jy@example.com")
    emails = ["ops@example.com", "lead@example.org"]
    job = ended_job(services, {"emails": emails}, JobState.CANCELLED)
    svc.tick()
    wait_for(lambda: len(inbox.messages) == 2)
    assert sorted(rcpt for rcpts, _ in inbox.messages for rcpt in rcpts) == sorted(emails)
    for rcpts, msg in inbox.messages:
        assert len(rcpts) == 1 and msg["To"] == rcpts[0]
        assert msg["Subject"] == "[jobyard] job nightly report was cancelled"
        assert msg["From"] == "jy@example.com"
        text = msg.get_payload(decode=True)
        assert isinstance(text, bytes)
        assert f"http://jobyard.test/v1/jobs/{job.id}".encode() in text
    assert {(d.channel, d.status) for d in log_of(services, job)} == {("email", "delivered")}


# ---- what is planned --------------------------------------------------------------
def test_an_unwanted_end_sends_nothing_but_is_marked(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    services = make_services(start=False, clock=ManualClock())
    svc = make_service(services)
    spec = {"webhooks": [{"url": f"{receiver.url}/hook"}], "on": ["failed"]}
    job = ended_job(services, spec, JobState.SUCCEEDED)
    silent = ended_job(services, None, JobState.SUCCEEDED)
    svc.tick()
    assert receiver.requests == [] and log_of(services, job) == []
    assert services.jobs.get(ADMIN, job.id).notified_at == services.clock.now()
    assert services.jobs.get(ADMIN, silent.id).notified_at is not None
    assert NotificationStore(services.db).jobs_to_notify() == []


def test_a_job_to_notify_behind_a_batch_of_silent_ends_is_planned(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    services = make_services(start=False, clock=ManualClock())
    svc = make_service(services)
    svc.plan_batch = 2  # a round looks at the first two unnotified ends
    silent = [ended_job(services, None, JobState.CANCELLED) for _ in range(3)]
    job = ended_job(services, {"webhooks": [{"url": f"{receiver.url}/hook"}]})
    svc.tick()
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert [d.status for d in log_of(services, job)] == ["delivered"]
    marked = [services.jobs.get(ADMIN, j.id).notified_at is not None for j in silent]
    assert marked == [True, True, False]  # the rest in the next rounds
    svc.tick()
    assert services.jobs.get(ADMIN, silent[2].id).notified_at is not None
    assert len(receiver.requests) == 1


def test_two_replicas_plan_and_send_each_notification_once(
    make_services: ServicesFactory, receiver: Receiver
) -> None:
    first = make_services(start=False, clock=ManualClock())
    second = make_services(start=False, clock=first.clock)
    hooks = {"webhooks": [{"url": f"{receiver.url}/a"}, {"url": f"{receiver.url}/b"}]}
    jobs = [ended_job(first, hooks) for _ in range(8)]
    services = [make_service(first), make_service(second)]
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def run(svc: NotificationService) -> None:
        try:
            barrier.wait(10)
            for _ in range(3):
                svc.tick()
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    for job in jobs:
        deliveries = log_of(first, job)
        assert sorted(d.target for d in deliveries) == [f"{receiver.url}/a", f"{receiver.url}/b"]
        assert all(d.status == "delivered" and d.attempts == 1 for d in deliveries)
    ids = [r.headers["x-jobyard-delivery"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 16


# ---- the delivery log -------------------------------------------------------------
def test_the_delivery_log_over_http(
    make_services: ServicesFactory, serve: Any, receiver: Receiver
) -> None:
    services = make_services(start=False)
    server: LiveServer = serve(services)
    svc = make_service(services)  # no SMTP server: the email fails at once
    spec = {"webhooks": [{"url": f"{receiver.url}/hook?token=s3cret"}], "emails": ["a@b.example"]}
    job = ended_job(services, spec)
    svc.tick()
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    r = httpx.get(f"{server.url}/v1/jobs/{job.id}/notifications", headers=auth)
    assert r.status_code == 200, r.text
    items = {i["channel"]: i for i in r.json()["items"]}
    hook, mail = items["webhook"], items["email"]
    assert hook["target"] == f"{receiver.url}/hook"  # no query string: tokens stay hidden
    assert (hook["event"], hook["status"], hook["attempts"]) == ("job.failed", "delivered", 1)
    assert hook["response_status"] == 200 and hook["last_error"] is None
    assert hook["created_at"] and hook["updated_at"] and hook["next_attempt_at"] is None
    assert (mail["target"], mail["status"], mail["attempts"]) == ("a@b.example", "failed", 1)
    assert "SMTP" in mail["last_error"]

    r = httpx.get(f"{server.url}/v1/jobs/no-such-job/notifications", headers=auth)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    services.auth.store.ensure_tenant("other", "Other", services.clock.now())
    _, other_key = services.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    r = httpx.get(
        f"{server.url}/v1/jobs/{job.id}/notifications",
        headers={"Authorization": f"Bearer {other_key}"},
    )
    assert r.status_code == 404


# ---- pieces ---------------------------------------------------------------------
def test_deliver_pins_the_address_and_keeps_the_host(receiver: Receiver) -> None:
    status = webhook.deliver(
        f"http://localhost:{receiver.port}/x", {"event": "job.succeeded"}, b"k", LOOPBACK
    )
    assert status == 200
    (req,) = receiver.requests
    assert req.headers["host"] == f"localhost:{receiver.port}"
    assert_signed(req, b"k")


def test_deliver_follows_no_redirect_and_reads_a_bounded_answer(receiver: Receiver) -> None:
    receiver.answers = [302]
    with pytest.raises(webhook.DeliveryError) as info:
        webhook.deliver(f"{receiver.url}/x", {"event": "job.failed"}, b"k", LOOPBACK)
    assert info.value.status_code == 302
    assert [r.path for r in receiver.requests] == ["/x"]
    receiver.answer_body = b"x" * (4 * 1024 * 1024)
    assert webhook.deliver(f"{receiver.url}/y", {"event": "job.failed"}, b"k", LOOPBACK) == 200


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_connects_to_the_pinned_address_with_the_hosts_sni(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    args = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    args += " -subj /CN=hooks.test -addext subjectAltName=DNS:hooks.test"
    command = ["openssl", *args.split(), "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    names: list[str | None] = []
    ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            ctx.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    real = socket.getaddrinfo

    def fake(host: str, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "hooks.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    port = listener.getsockname()[1]
    with pytest.raises(webhook.DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        webhook.deliver(f"https://hooks.test:{port}/x", {"event": "job.failed"}, b"k", LOOPBACK)
    thread.join(10)
    listener.close()
    assert names == ["hooks.test"]  # the self-signed certificate is the only objection


def test_submission_spec_is_validated_and_normalised(receiver: Receiver) -> None:
    raw = {
        "webhooks": [f"{receiver.url}/a", {"url": f"{receiver.url}/a", "secret": "x"}],
        "emails": ["a@b.example", "A@B.example"],
    }
    assert notify.validate_spec(raw, LOOPBACK) == {
        "webhooks": [{"url": f"{receiver.url}/a"}],
        "emails": ["a@b.example"],
        "on": ["succeeded", "failed", "timed_out", "cancelled"],
    }
    public = {"url": "http://93.184.216.34/hook"}
    bad: list[tuple[Any, str]] = [
        ({"webhooks": [public, {"url": f"{receiver.url}/a"}]}, "notifications.webhooks[1].url"),
        ({"webhooks": [public] * 11}, "notifications.webhooks"),
        (
            {"webhooks": [{"url": "http://93.184.216.34/", "secret": ""}]},
            "notifications.webhooks[0].secret",
        ),
        ({"webhooks": [{"url": "http://93.184.216.34/", "x": 1}]}, "notifications.webhooks[0]"),
        ({"emails": ["no-at-sign"]}, "notifications.emails[0]"),
        ({"emails": ["a@b.example\r\nBcc: x@y.example"]}, "notifications.emails[0]"),
        ({"emails": ["a@b.example"] * 21}, "notifications.emails"),
        ({"on": ["done"]}, "notifications.on"),
        ({"on": "failed"}, "notifications.on"),
        ({"webhook": []}, "notifications"),
        (["x"], "notifications"),
    ]
    for spec, field in bad:
        with pytest.raises(errors.InvalidInput) as info:
            notify.validate_spec(spec, ())
        assert info.value.details["field"] == field, spec
    assert notify.compat_spec(True, True, ["a@b.example"]) == {
        "emails": ["a@b.example"],
        "on": ["succeeded", "failed", "timed_out"],
    }


def test_the_server_secret_is_made_once_and_private(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    assert len(secret) == 64 and load_or_create_secret(tmp_path) == secret
    assert stat.S_IMODE(os.stat(tmp_path / "webhook_secret").st_mode) == 0o600
    assert NotifyConfig.from_settings(Settings(data_dir=tmp_path)).webhook_secret == secret
