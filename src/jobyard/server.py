"""``jobyard serve``: one process with the API, the dispatcher and a local executor."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from jobyard import errors, memory, serverlog
from jobyard.api.app import create_app
from jobyard.one_write import OneWriteProtocol
from jobyard.sdk.config import (  # no httpx: lazy sdk
    read_credentials,
    user_config_dir,
    write_credentials,
)
from jobyard.settings import Settings
from jobyard.store import migrate
from jobyard.wiring import Services, build_services

log = logging.getLogger("jobyard")
_json_log = False  #: set by serve: announcements go through the log, as JSON lines


def _say(text: str) -> None:
    """An announcement for the person who started the server: a plain line on stderr,
    or with ``--log-format json`` a log record (a collector parses every line)."""
    if _json_log:
        log.info(text.removeprefix("jobyard: "))
    else:
        print(text, file=sys.stderr)


def _announce(settings: Settings, new_key: str | None) -> None:
    creds_dir = settings.data_dir
    existing = read_credentials(creds_dir)
    key = new_key or existing.get("api_key")
    if key:
        path = write_credentials(creds_dir, settings.api_url, str(key))
        where = str(path)
        try:  # so that the CLI and SDK find this server from any directory
            user = write_credentials(user_config_dir(), settings.api_url, str(key))
            where += f" and {user}"
        except OSError as e:
            where += f" (not in {user_config_dir()}: {e.strerror or e})"
        _say(f"jobyard: credentials for local clients in {where}")
    if new_key:
        _say(
            "jobyard: first start: created the default tenant and an admin API key "
            f"(shown once, also saved in {creds_dir / 'credentials.json'}):\n  {new_key}"
        )
    elif not key:
        _say(
            "jobyard: API keys exist but no credentials.json here; set JOBYARD_API_KEY for clients"
        )


def _announce_sandbox(services: Services) -> None:
    support = services.sandbox
    if support.sandboxed:
        limits = "with" if support.kernel_limits else f"without ({support.limits_reason})"
        _say(f"jobyard: jobs run in a sandbox, {limits} kernel limits")
    elif services.dispatcher is not None:
        _say(
            f"jobyard: WARNING: jobs are NOT sandboxed ({support.reason}): a job can read "
            "this server's data directory; serve one tenant only, or tenants that trust "
            "each other (docs/explanation/security.md)"
        )


def start_services(settings: Settings) -> tuple[Services, str | None]:
    """Build and start the services; returns it with the admin key a first start created.
    A migration runs in a forked child, so that Alembic never loads in the server."""
    services = build_services(settings)
    migrate.upgrade(services.db, isolated=True)
    return services, services.start()  # its own upgrade finds the schema at head


def serve(settings: Settings) -> None:
    """Run until interrupted (SIGINT/SIGTERM), then stop the jobs and the dispatcher."""
    global _json_log
    serverlog.configure(settings.log_level, settings.log_format)
    _json_log = settings.log_format == "json"
    if not settings.run_api and not settings.run_dispatcher:
        raise errors.InvalidInput(
            "a node needs the API or the dispatcher: --no-api and --no-dispatcher together "
            "leave it nothing to do",
            field="run_api",
        )
    services, new_key = start_services(settings)
    settings = services.settings  # with the slots the executor found (a Ray cluster's CPUs)
    if settings.run_api:
        _announce(settings, new_key)
    elif new_key:  # a dispatch-only first start: the key is still shown once
        _say(
            f"jobyard: first start: created the default tenant and an admin API key "
            f"(shown once):\n  {new_key}"
        )
    roles = [r for r, on in (("API", settings.run_api), ("jobs", settings.run_dispatcher)) if on]
    where = f"serving on {settings.api_url}" if settings.run_api else "dispatching only (no API)"
    slots = f", {settings.slots} slots" if settings.run_dispatcher else ""
    _say(
        f"jobyard: {where} (node {services.node_id}: {' and '.join(roles)}{slots}, database "
        f"{services.db.engine.url.render_as_string(hide_password=True)}, storage "
        f"{_safe_url(settings.storage)}"
        f"{', logs shared there' if settings.logs_shared else ''})"
        + (f"; docs at {settings.api_url}/docs" if settings.run_api else "")
    )
    _announce_sandbox(services)
    config = (
        uvicorn.Config(
            create_app(services),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            log_config=None,  # uvicorn's records go through serverlog's handler
            access_log=False,  # jobyard.access logs each request (with its time)
            timeout_graceful_shutdown=5,
            http=OneWriteProtocol,  # an answer's head and body in one socket write
        )
        if settings.run_api
        else None
    )
    memory.give_back()
    gc.freeze()  # start-up objects leave the collector's work: no long pauses later
    try:
        if config is not None:
            _Server(config).run()
        else:
            _wait_for_signal()
    finally:
        services.close()


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown, which would end the process before
    the dispatcher stops its jobs; here SIGINT and SIGTERM only ask the server to exit
    (a second one forces it), and :func:`serve` then stops the jobs.

    uvicorn's main loop also wakes ten times a second to see whether to exit; this one
    wakes once a second (for the ``Date`` header, which uvicorn refreshes as often), and
    a signal wakes it at once."""

    _wake: Callable[[], object] | None = None

    async def main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        asked = asyncio.Event()
        self._wake = lambda: loop.call_soon_threadsafe(asked.set)
        counter = 0
        try:
            while not await self.on_tick(counter):
                counter += 10  # a multiple of ten: on_tick refreshes the Date header
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asked.wait(), 1.0)
        finally:
            self._wake = None  # the loop may close: a later signal only sets the flags

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._wake is not None:
            self._wake()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _safe_url(url: str) -> str:
    """A storage URL without credentials it may carry (``s3://key:secret@bucket``)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def _wait_for_signal() -> None:
    """A dispatch-only node runs until SIGINT or SIGTERM (its work is in other threads)."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
