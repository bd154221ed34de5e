"""The dashboard in a real browser (Debian's chromium through Playwright) against a real
``jobyard serve``: sign in and out, live rows and job pages, cancel, retry, the submit
forms, folders, roles, tenant isolation and CSRF. One server and one browser for the
module; jobs that must wait for the test wait on gate files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.acceptance.serverproc import ENDED
from tests.web.conftest import Web, sign_in

pytestmark = pytest.mark.acceptance


def _submit_form(page: Page, web: Web, command: str, name: str, params: str = "") -> str:
    """Submit a command job through the form; returns its id (from the page it opens)."""
    page.goto(f"{web.url}/ui/submit")
    page.get_by_label("Command").fill(command)
    page.get_by_label("Name (optional)").fill(name)
    if params:
        page.get_by_label(re.compile("^Parameters")).fill(params)
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[-1]


def _live(page: Page) -> None:
    """Wait until the page's live connection (htmx SSE) is open."""
    expect(page.locator("body[data-live=open]")).to_have_count(1)


def test_sign_in_and_out(page: Page, web: Web) -> None:
    response = page.goto(f"{web.url}/")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=/ui/jobs$"))
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src" not in policy  # self only
    web.shot(page, "sign-in")
    page.get_by_label("API key").fill("jy_nope_nope")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("not valid")

    page.get_by_label("API key").fill(web.admin_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["jobyard_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert not session["secure"]  # plain HTTP here; Secure is set when served over HTTPS
    secret = web.admin_key.split("_")[2]
    assert secret not in session["value"]  # the key itself is never kept in the browser

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
    assert "jobyard_session" not in {c["name"] for c in page.context.cookies()}
    page.goto(f"{web.url}/ui/jobs")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="))


def test_submitted_job_runs_and_its_row_turns_green_live(admin_page: Page, web: Web) -> None:
    page = admin_page
    job_id = _submit_form(page, web, web.gate_command("row", after="echo done"), "row-job")
    web.server.wait_status(job_id, {"running"})
    page.goto(f"{web.url}/ui/jobs")
    row = page.locator(f"#job-{job_id}")
    expect(row.locator(".badge")).to_have_text("running")
    _live(page)
    page.evaluate("window.__same_page = true")
    web.open_gate("row")
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(row.locator(".badge.ok")).to_be_visible()  # green
    # times in the browser's zone (Europe/Berlin here), UTC on hover
    ended = row.locator("time").nth(2)
    expect(ended).to_have_attribute("data-local", "1")
    expect(ended).to_have_attribute("title", re.compile(r"UTC$"))
    assert "UTC" not in ended.inner_text()
    assert page.evaluate("window.__same_page === true")  # no reload
    expect(page.locator("#counts")).to_contain_text("succeeded")
    web.shot(page, "jobs")
    page.set_viewport_size({"width": 390, "height": 800})
    web.shot(page, "jobs-phone", full_page=False)


def test_a_start_time_is_read_in_the_browsers_zone(admin_page: Page, web: Web) -> None:
    page = admin_page
    page.goto(f"{web.url}/ui/submit")
    page.get_by_label("Command").fill("true")
    page.get_by_label(re.compile("^Start no earlier than")).fill("2099-01-01T10:00")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#summary .badge")).to_have_text("scheduled")
    job = web.job(page.url.rsplit("/", 1)[-1])
    assert job["scheduled_at"].startswith("2099-01-01T09:00:00")  # Berlin is UTC+1 then


def test_detail_shows_live_progress_and_log_lines(admin_page: Page, web: Web) -> None:
    page = admin_page
    progress = '::jobyard::{"type": "progress", "percent": 40, "stage": "scoring"}'
    warning = '::jobyard::{"type": "warning", "message": "3 rows skipped"}'
    first = web.gate_command(
        "log-1", after=f"echo 'first line'; echo '{progress}'; echo '{warning}'"
    )
    command = web.gate_command("log-2", before=first, after="echo 'second line'")
    job_id = _submit_form(page, web, command, "live-job")
    web.server.wait_status(job_id, {"running"})
    page.reload()
    _live(page)
    expect(page.locator("#log")).not_to_contain_text("first line")
    page.evaluate("window.__same_page = true")

    web.open_gate("log-1")
    expect(page.locator("#log")).to_contain_text("first line")
    expect(page.locator("#progress-percent")).to_have_text("40.0%")
    expect(page.locator("#progress-stage")).to_have_text("scoring")
    expect(page.locator("#summary .badge")).to_have_text("running")
    web.shot(page, "job-running")

    web.open_gate("log-2")
    expect(page.locator("#log")).to_contain_text("second line")
    expect(page.locator("#summary .badge")).to_have_text("succeeded")
    expect(page.locator("#timeline")).to_contain_text("running → succeeded")
    assert page.evaluate("window.__same_page === true")
    with page.expect_download() as download:
        page.get_by_role("link", name="download the full log").click()
    text = Path(download.value.path()).read_text()
    assert "first line" in text and "second line" in text
    samples = web.api("GET", f"/v1/jobs/{job_id}/metrics").json()["samples"]
    page.reload()  # the CPU and memory chart is drawn from the samples (when there are any)
    expect(page.locator("[data-chart=job-resources] .uplot")).to_have_count(1 if samples else 0)
    expect(page.locator("#warnings")).to_contain_text("3 rows skipped")
    web.shot(page, "job-ended")


def test_cancel_from_the_page(admin_page: Page, web: Web) -> None:
    page = admin_page
    job_id = _submit_form(page, web, web.gate_command("never-cancel"), "to-cancel")
    web.server.wait_status(job_id, {"running"})
    page.reload()
    page.get_by_role("link", name="Cancel…").click()
    expect(page.get_by_role("heading", name=re.compile("^Cancel"))).to_be_visible()
    web.shot(page, "cancel-confirm")
    page.get_by_label("Reason (optional)").fill("wrong input")
    page.get_by_role("button", name="Cancel gracefully").click()
    expect(page).to_have_url(re.compile(f"/ui/jobs/{job_id}$"))
    expect(page.locator("#summary .badge")).to_have_text("cancelled")
    assert web.job(job_id)["status"] == "cancelled"

    # force: a job that ignores SIGTERM is killed at once
    stubborn = _submit_form(page, web, "trap '' TERM; " + web.gate_command("never-force"), "hard")
    web.server.wait_status(stubborn, {"running"})
    page.reload()
    page.get_by_role("link", name="Cancel…").click()
    page.get_by_role("button", name="Force stop").click()
    expect(page.locator("#summary .badge")).to_have_text("cancelled")
    assert web.job(stubborn)["status"] == "cancelled"


def test_retry_with_a_changed_parameter_links_both_ways(admin_page: Page, web: Web) -> None:
    page = admin_page
    command = 'echo "$JOBYARD_PARAMETERS" > "$JOBYARD_OUTPUT_DIR/params.json"'
    old = _submit_form(page, web, command, "retry-me", '{"n": 1}')
    assert web.server.wait_status(old, ENDED)["status"] == "succeeded"
    page.reload()
    with page.expect_download() as download:  # the job's result, downloaded from its page
        page.get_by_role("link", name="params.json").click()
    assert json.loads(Path(download.value.path()).read_text())["n"] == 1
    page.get_by_role("link", name="Retry with changes…").click()
    field = page.get_by_label("n", exact=True)
    expect(field).to_have_value("1")
    field.fill("2")
    page.get_by_role("button", name="Run again").click()
    expect(page).to_have_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    new = page.url.rsplit("/", 1)[-1]
    assert new != old
    expect(page.locator("#retry-of")).to_have_attribute("href", f"/ui/jobs/{old}")
    assert json.loads(page.locator("#parameters").inner_text()) == {"n": 2}
    assert web.job(new)["retry_of"] == old
    page.locator("#retry-of").click()
    expect(page.locator(".retried-as")).to_have_attribute("href", f"/ui/jobs/{new}")


def test_filters_and_cursor_pages(admin_page: Page, web: Web) -> None:
    ids = [
        web.api("POST", "/v1/jobs", json={"entrypoint": "true", "name": f"Page-Me {i}"}).json()[
            "id"
        ]
        for i in range(2)
    ]
    for job_id in ids:
        web.server.wait_status(job_id, ENDED)
    page = admin_page
    page.goto(f"{web.url}/ui/jobs?q=page-me")
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Page-Me 1")  # newest first
    expect(page.locator("#counts")).to_contain_text("all 2")
    page.goto(f"{web.url}/ui/jobs?q=page-me&limit=1")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("id", f"job-{ids[1]}")
    page.get_by_role("link", name="Older »").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("id", f"job-{ids[0]}")
    expect(page.get_by_role("link", name="Older »")).to_have_count(0)
    page.get_by_role("link", name="« Newest").click()
    expect(rows.first).to_have_attribute("id", f"job-{ids[1]}")
    page.goto(f"{web.url}/ui/jobs?q=page-me&status=failed")
    expect(page.get_by_text("No job matches these filters")).to_be_visible()


def test_model_submit_shows_the_schema_error_next_to_the_field(admin_page: Page, web: Web) -> None:
    assert web.api("POST", "/v1/models", json={"name": "scorer"}).status_code == 201
    version = {
        "version": "1",
        "kind": "command",
        "entrypoint": "echo scoring",
        "parameters_schema": {
            "type": "object",
            "properties": {"threshold": {"type": "number", "maximum": 1}},
        },
    }
    resp = web.api("POST", "/v1/models/scorer/versions", json=version)
    assert resp.status_code == 201, resp.text
    page = admin_page
    page.goto(f"{web.url}/ui/submit/model")
    page.get_by_label("Model version").select_option("scorer:1")
    page.get_by_role("button", name="Choose").click()
    page.get_by_label("threshold").fill("1.5")
    page.get_by_role("button", name="Run").click()
    error = page.locator("#param-threshold ~ #parameters-threshold-error")
    expect(error).to_contain_text("parameters.threshold")
    expect(error).to_contain_text("maximum")
    expect(page.get_by_label("threshold")).to_have_attribute("aria-invalid", "true")
    web.shot(page, "submit-model-error")
    page.get_by_label("threshold").fill("0.5")
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#parameters")).to_contain_text('"threshold": 0.5')
    expect(page.get_by_role("link", name="scorer:1")).to_have_attribute("href", "/ui/models/scorer")


def test_folder_upload_and_download(admin_page: Page, web: Web) -> None:
    page = admin_page
    page.goto(f"{web.url}/ui/folders")
    page.get_by_label("Name").fill("inputs")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name=re.compile("^inputs"))).to_be_visible()
    content = b"a,b\n1,2\n"
    page.get_by_label("Files").set_input_files(
        {"name": "data.csv", "mimeType": "text/csv", "buffer": content}
    )
    page.get_by_role("button", name="Upload").click()
    link = page.get_by_role("link", name="data.csv")
    expect(link).to_be_visible()
    web.shot(page, "folder")
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_bytes() == content


def test_viewer_sees_no_cancel_button_and_a_forged_cancel_is_refused(
    other_page: Page, web: Web
) -> None:
    body = {"entrypoint": web.gate_command("viewer")}
    job_id = web.api("POST", "/v1/jobs", json=body).json()["id"]
    try:
        web.server.wait_status(job_id, {"running"})
        page = sign_in(other_page, web, web.new_key("watcher", "viewer"))
        expect(page.get_by_role("link", name="Submit a job")).to_have_count(0)
        page.goto(f"{web.url}/ui/jobs/{job_id}")
        expect(page.locator("#summary .badge")).to_have_text("running")
        expect(page.get_by_role("link", name="Cancel…")).to_have_count(0)
        token = page.locator("input[name=csrf]").first.get_attribute("value")
        forged = page.request.post(
            f"{web.url}/ui/jobs/{job_id}/cancel", form={"csrf": token or "", "force": "1"}
        )
        assert forged.status == 403, forged.text()
        assert "viewer" in forged.text()
        assert web.job(job_id)["status"] == "running"
    finally:
        web.open_gate("viewer")


def test_another_tenants_job_page_is_404(other_page: Page, web: Web) -> None:
    job_id = web.api("POST", "/v1/jobs", json={"entrypoint": "true", "name": "mine"}).json()["id"]
    resp = web.api("POST", "/v1/tenants", json={"id": "other", "name": "Other"})
    assert resp.status_code == 201, resp.text
    page = sign_in(other_page, web, web.new_key("other-admin", "admin", tenant="other"))
    expect(page.locator(f"#job-{job_id}")).to_have_count(0)
    response = page.goto(f"{web.url}/ui/jobs/{job_id}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name=re.compile("Not found"))).to_be_visible()
    live = page.request.get(f"{web.url}/ui/jobs/{job_id}/live")
    assert live.status == 404


def test_a_form_without_its_csrf_token_is_refused(admin_page: Page, web: Web) -> None:
    body = {"entrypoint": web.gate_command("csrf")}
    job_id = web.api("POST", "/v1/jobs", json=body).json()["id"]
    try:
        web.server.wait_status(job_id, {"running"})
        page = admin_page
        missing = page.request.post(f"{web.url}/ui/jobs/{job_id}/cancel", form={"force": "1"})
        assert missing.status == 403 and "CSRF" in missing.text()
        wrong = page.request.post(
            f"{web.url}/ui/jobs/{job_id}/cancel", form={"csrf": "x" * 43, "force": "1"}
        )
        assert wrong.status == 403
        assert web.job(job_id)["status"] == "running"
    finally:
        web.open_gate("csrf")


def test_pages_are_readable_without_javascript(browser: Browser, web: Web) -> None:
    job_id = web.api("POST", "/v1/jobs", json={"entrypoint": "echo plain-text-log"}).json()["id"]
    web.server.wait_status(job_id, ENDED)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = sign_in(context.new_page(), web, web.admin_key)
        expect(page.locator(f"#job-{job_id}")).to_be_visible()
        page.goto(f"{web.url}/ui/jobs/{job_id}")
        expect(page.locator("#log")).to_contain_text("plain-text-log")
        expect(page.locator("#summary .badge")).to_have_text("succeeded")
    finally:
        context.close()


def test_other_pages_render(admin_page: Page, web: Web) -> None:
    """The remaining pages answer and say what to do when empty (screenshots for the
    docs)."""
    page = admin_page
    for path, heading, shot in [
        ("/ui/submit", "Submit a command job", "submit"),
        ("/ui/models", "Models", "models"),
        ("/ui/environments", "Environments", None),
        ("/ui/definitions", "Job definitions", None),
        ("/ui/system", "System", None),
        ("/ui/admin/keys", "API keys", "admin-keys"),
        ("/ui/admin/audit", "Audit log", None),
    ]:
        response = page.goto(f"{web.url}{path}")
        assert response is not None and response.status == 200, path
        expect(page.get_by_role("heading", name=re.compile(f"^{heading}"))).to_be_visible()
        if shot:
            web.shot(page, shot)
    page.goto(f"{web.url}/ui/system")
    expect(page.locator("#chart-wait .uplot")).to_be_visible()  # wait time, last hour
    expect(page.locator("#chart-ended .uplot")).to_be_visible()  # throughput, last hour
    expect(page.locator("table").first).to_contain_text(re.compile(r"\d / 2"))  # node slots
    web.shot(page, "system")
    page.goto(f"{web.url}/ui/environments")
    expect(page.get_by_text("No environments yet")).to_be_visible()
    # a job definition runs now from its page; the model page lists the job
    assert web.api("POST", "/v1/models", json={"name": "nightly"}).status_code == 201
    version = {"version": "1", "kind": "command", "entrypoint": "echo nightly-run"}
    assert web.api("POST", "/v1/models/nightly/versions", json=version).status_code == 201
    body = {"name": "nightly-report", "model": "nightly:1", "schedule": "0 3 * * *"}
    assert web.api("POST", "/v1/definitions", json=body).status_code == 201
    page.goto(f"{web.url}/ui/definitions")
    expect(page.locator("table")).to_contain_text("0 3 * * *")
    web.shot(page, "definitions")
    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#summary .badge")).to_have_text("succeeded")
    expect(page.locator("#log")).to_contain_text("nightly-run")
    page.goto(f"{web.url}/ui/models/nightly")
    expect(page.get_by_text("Recent jobs of this model")).to_be_visible()
    expect(page.locator("main")).to_contain_text("succeeded")

    page.goto(f"{web.url}/ui/admin/keys")
    page.get_by_label("Name").fill("ci")
    page.get_by_label("Role").select_option("operator")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text().strip()
    assert web.api("GET", "/v1/jobs", key=secret).status_code == 200
    page.goto(f"{web.url}/ui/admin/keys")  # shown once: not on the next visit
    expect(page.locator("#new-key")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())  # "Revoke key ci? …"
    page.get_by_role("button", name="Revoke key ci").click()
    expect(page.locator("tr", has_text="operator")).to_contain_text("revoked")
    assert web.api("GET", "/v1/jobs", key=secret).status_code == 401
