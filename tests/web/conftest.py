"""Browser tests of the dashboard: Debian's ``chromium`` (driven by Playwright) against one
real ``jobyard serve`` per module. Playwright's own browser download cannot work on these
machines; ``scripts/test`` installs the ``chromium`` package where it is missing."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserType, Page, Playwright, expect, sync_playwright

from tests.acceptance.serverproc import Server
from tests.conftest import GATES

CHROMIUM = os.environ.get("JOBYARD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: screenshots for docs/how-to/ui.md: written there with JOBYARD_UI_SCREENSHOTS=1, else to tmp
DOCS_UI = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "ui"

RELEASE_ALL = "release-all"

expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium package")
    return {"executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


# Playwright's sync API runs an event loop in the test's thread while it is started:
# pytest-playwright starts it once per session, which breaks every later test of that
# worker that calls asyncio.run() (the suite runs on pytest-xdist workers). Here it
# lives as long as the module that uses it.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright) -> BrowserType:
    return playwright.chromium


@pytest.fixture(scope="module")
def browser(
    browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
) -> Iterator[Browser]:
    launched = browser_type.launch(**browser_type_launch_args)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def browser_context_args() -> dict[str, Any]:
    return {"viewport": {"width": 1280, "height": 800}, "timezone_id": "Europe/Berlin"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Web:
    """The module's server, its gates and API helpers for setting up what a test needs."""

    def __init__(self, server: Server, gates: Path, shots: Path) -> None:
        self.server = server
        self.url = server.url
        self.gates = gates
        self.shots = shots
        creds = json.loads((server.home / "credentials.json").read_text())
        self.admin_key: str = creds["api_key"]

    def api(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kw)

    def new_key(self, name: str, role: str, tenant: str | None = None) -> str:
        body: dict[str, Any] = {"name": name, "role": role}
        if tenant:
            body["tenant"] = tenant
        resp = self.api("POST", "/v1/keys", json=body)
        assert resp.status_code == 201, resp.text
        secret: str = resp.json()["secret"]
        return secret

    def gate_command(self, name: str, before: str = "", after: str = "") -> str:
        """A shell command that runs ``before``, waits (up to 60 s) for the gate file
        ``name``, then runs ``after``."""
        gate, done = self.gates / name, self.gates / RELEASE_ALL
        wait = (
            f"i=0; while [ ! -e {gate} ] && [ ! -e {done} ] && [ $i -lt 1200 ]; "
            "do sleep 0.05; i=$((i+1)); done"
        )
        return "; ".join(p for p in (before, wait, after) if p)

    def open_gate(self, name: str) -> None:
        (self.gates / name).touch()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.server.get_job(job_id)

    def shot(self, page: Page, name: str, full_page: bool = True) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    root = tmp_path_factory.mktemp("web")
    home = root / "home"
    home.mkdir()
    gates = root / GATES
    gates.mkdir()
    gates.chmod(0o755)
    shots = DOCS_UI if os.environ.get("JOBYARD_UI_SCREENSHOTS") == "1" else root / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    server = Server(
        home,
        f"sqlite:///{root / 'jobyard.db'}",
        root / "serve.log",
        _free_port(),
        env={"JOBYARD_SANDBOX_READ_ONLY": str(gates)},
    )
    server.start()
    try:
        yield Web(server, gates, shots)
    finally:
        (gates / RELEASE_ALL).touch()  # jobs a failed test left waiting end now
        server.stop()


def sign_in(page: Page, web: Web, key: str) -> Page:
    """Sign in through the form (the way a user does)."""
    page.goto(f"{web.url}/ui/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


@pytest.fixture
def admin_page(page: Page, web: Web) -> Iterator[Page]:
    """The admin signed in; the test fails if the browser logged an error (a script
    blocked by the Content-Security-Policy, a failed asset, an exception)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}")
            if "/ui/static/" in r.url and r.status >= 400
            else None
        ),
    )
    yield sign_in(page, web, web.admin_key)
    # pages answered 4xx on purpose (a form with errors) log "Failed to load resource";
    # a page left while its live stream was open logs a network error
    expected = ("Failed to load resource: the server responded", "net::ERR_", "EventSource")
    assert not [p for p in problems if not any(e in p for e in expected)], problems


@pytest.fixture
def other_page(browser: Browser) -> Iterator[Page]:
    """A second browser context (another user, own cookies)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()
