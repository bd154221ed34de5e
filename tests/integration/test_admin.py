"""Administration through the CLI and the API: tenants, projects, keys, roles, audit."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from jobyard import Client
from jobyard.cli.main import app
from tests.conftest import LiveServer


def _cli(live: LiveServer, key: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, list(args), env={"JOBYARD_URL": live.url, "JOBYARD_API_KEY": key}
    )
    return result.exit_code, result.output


def test_keys_roles_tenants_projects_and_audit(live: LiveServer) -> None:
    sup = live.admin_key
    code, out = _cli(live, sup, "keys", "create", "reader", "--role", "viewer")
    assert code == 0, out
    viewer = out.strip().splitlines()[-1]
    assert viewer.startswith("jy_")
    with Client(live.url, viewer) as c:
        assert c.list().items == []  # reading is fine
    code, out = _cli(live, viewer, "submit", "-q", "--", "true")
    assert code == 6 and "viewer key may only read" in out  # 403
    code, out = _cli(live, sup, "keys", "list", "--json")
    listed = {k["name"]: k for k in __import__("json").loads(out)}
    assert listed["reader"]["role"] == "viewer" and "secret" not in listed["reader"]
    assert listed["reader"]["prefix"] == f"jy_{listed['reader']['id']}_"
    code, out = _cli(live, sup, "keys", "revoke", listed["reader"]["id"])
    assert code == 0, out
    r = httpx.get(live.url + "/v1/jobs", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 401 and "revoked" in r.json()["message"]

    code, out = _cli(live, sup, "tenants", "create", "acme", "--name", "Acme")
    assert code == 0, out
    code, out = _cli(
        live, sup, "keys", "create", "acme-admin", "--role", "admin", "--tenant", "acme"
    )
    acme_admin = out.strip().splitlines()[-1]
    with Client(live.url, acme_admin) as acme:
        job = acme.submit("true")
        assert acme.wait(job.id, timeout=30).status == "succeeded"
        assert [p["name"] for p in acme.projects()] == ["default"]
        acme.create_project("research")
        with pytest.raises(Exception) as info:
            acme.create_tenant("other", "Other")  # admins do not manage tenants
        assert getattr(info.value, "status_code", None) == 403
    with Client(live.url, sup) as c:
        assert all(j.id != job.id for j in c.list().items)  # another tenant's job
        with pytest.raises(Exception) as info:
            c.get(job.id)
        assert getattr(info.value, "status_code", None) == 404
    code, out = _cli(live, sup, "tenants", "update", "acme", "--deactivate")
    assert code == 0 and "deactivated" in out
    r = httpx.get(live.url + "/v1/jobs", headers={"Authorization": f"Bearer {acme_admin}"})
    assert r.status_code == 401 and "deactivated" in r.json()["message"]
    code, out = _cli(live, sup, "audit", "--json")
    actions = [a["action"] for a in __import__("json").loads(out)]
    assert {"key.create", "key.revoke", "tenant.create", "tenant.update"} <= set(actions)


def test_project_scoped_keys_see_only_their_project(live: LiveServer) -> None:
    with Client(live.url, live.admin_key) as sup:
        sup.create_project("team-a")
        scoped = sup.create_key("team-a-bot", "member", project="team-a")["secret"]
        outside = sup.submit("true")
    with Client(live.url, scoped) as c:
        inside = c.submit("true")
        assert [j.id for j in c.list().items] == [inside.id]
        with pytest.raises(Exception) as info:
            c.get(outside.id)
        assert getattr(info.value, "status_code", None) == 404
        assert c.list().summary.total == 1
    with Client(live.url, live.admin_key) as sup:
        assert {j.id for j in sup.list().items} == {inside.id, outside.id}
        sup.create_folder("shared-data")
        sup.create_model("tenant-model")
        sup.create_environment("tenant-env")
    with Client(live.url, scoped) as c:
        assert c.folders() == [] and c.models() == [] and c.environments() == []
        for get in (
            lambda: c.folder("shared-data"),
            lambda: c.model("tenant-model"),
            lambda: c.environment("tenant-env"),
        ):
            with pytest.raises(Exception) as info:
                get()
            assert getattr(info.value, "status_code", None) == 404
        c.create_folder("team-data")
        c.create_model("team-model")
        assert [f.name for f in c.folders()] == ["team-data"]
        assert [m.name for m in c.models()] == ["team-model"]
    with Client(live.url, live.admin_key) as sup:
        assert {f.name for f in sup.folders()} == {"shared-data", "team-data"}


def test_members_cancel_their_own_jobs_operators_anyones(live: LiveServer) -> None:
    with Client(live.url, live.admin_key) as sup:
        ann = sup.create_key("ann", "member")["secret"]
        bob = sup.create_key("bob", "member")["secret"]
        ops = sup.create_key("ops", "operator")["secret"]
    with Client(live.url, ann) as a, Client(live.url, bob) as b, Client(live.url, ops) as o:
        job = a.submit("sleep 30", scheduled_at=__import__("datetime").datetime(2099, 1, 1))
        with pytest.raises(Exception) as info:
            b.cancel(job.id)
        assert getattr(info.value, "status_code", None) == 403
        assert o.cancel(job.id).status == "cancelled"
        assert a.get(job.id).submitted_by == "ann"
    with Client(live.url, live.admin_key) as sup:
        assert any(
            e["action"] == "job.cancelling" and e["target"] == job.id for e in sup.audit_log()
        )
