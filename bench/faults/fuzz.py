"""Scenario 5: bad input at scale. Schemathesis against the whole OpenAPI schema (native
and compat routes) with the run of ``tests/security/test_schemathesis.py`` (its admin
key, its excluded routes, its checks), only with more examples per operation: no answer
≥ 500 and every answer matching its schema and documented status codes."""

from __future__ import annotations

import math

from bench.faults.common import Outcome, temp_dir


def run_fuzz(cases: int) -> Outcome:
    """About ``cases`` generated requests over all operations (valid and invalid ones)."""
    import logging

    from hypothesis.configuration import set_hypothesis_home_dir
    from tests.conftest import LiveServer, _free_port, fast_settings
    from tests.security.test_schemathesis import EXCLUDED, _run

    from jobyard.domain.auth import Role
    from jobyard.store.migrate import upgrade
    from jobyard.wiring import build_services

    out = Outcome("bad input at scale (schemathesis)", "sqlite")
    # a 500's traceback would be logged by the in-process server; the figures count them
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    tmp, remove = temp_dir("jobyard-faults-fuzz-")
    set_hypothesis_home_dir(str(tmp / "hypothesis"))
    port = _free_port()
    services = build_services(
        fast_settings(
            tmp / "data",
            f"sqlite:///{tmp / 'jobyard.db'}",
            port=port,
            public_url=f"http://127.0.0.1:{port}",
        )
    )
    upgrade(services.db)  # no dispatcher: generated entrypoints must never run
    services.auth.bootstrap()
    live = LiveServer(services).start()
    try:
        _, admin = services.auth.create_key(tenant_id="default", name="fuzzer", role=Role.ADMIN)
        operations = _count_operations(live.url) - len(EXCLUDED)
        # about 70 % of the examples asked for are generated (operations without
        # parameters have few distinct requests, some cannot be made invalid)
        examples = max(1, math.ceil(cases / (2 * operations) / 0.7))
        found = _run(live, admin, examples)
        compat = [op for op in found.checked if not op.split()[1].startswith("/v1/")]
        server_errors = sum(n for code, n in found.statuses.items() if code >= 500)
        out.add(
            "operations fuzzed (native + compat/other)",
            f"{len(found.checked)} ({len(found.checked) - len(compat)} + {len(compat)});"
            f" excluded: {', '.join(EXCLUDED)}",
        )
        out.add("generated requests", f"{found.cases:,} ({examples} per operation and mode)")
        out.add("run time", f"{found.seconds:.0f} s")
        out.add("answers ≥ 500", server_errors, "0", server_errors == 0)
        out.add(
            "operations with a 5xx or an answer breaking its schema",
            len(found.broken),
            "0",
            not found.broken,
        )
        out.add(
            "operations answering undocumented status codes",
            len(found.undocumented),
            "0",
            not found.undocumented,
        )
        out.add(
            "answers by status", ", ".join(f"{k} ×{v}" for k, v in sorted(found.statuses.items()))
        )
        huge = _huge_integers(live.url, admin)
        bad = {k: v for k, v in huge.items() if v >= 500}
        out.add(
            "integer query parameters sent 10^22 (huge ints → 422)",
            f"{len(huge)} parameters; {len(bad)} answered ≥ 500"
            + (f": {', '.join(sorted(bad))}" if bad else ""),
            "0 answers ≥ 500 (issue 11 §2)",
            not bad,
        )
        for label, reports in sorted(found.broken.items()):
            out.notes.append(f"broken: {label} ({len(reports)} examples): {reports[0][:600]}")
        for label, codes in sorted(found.undocumented.items()):
            out.notes.append(f"undocumented: {label}: {sorted(codes)}")
        return out
    finally:
        live.stop()
        services.close()
        remove()


def _count_operations(url: str) -> int:
    import httpx

    schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sum(1 for item in schema["paths"].values() for m in item if m in methods)


def _huge_integers(url: str, key: str) -> dict[str, int]:
    """Send 10**22 in every integer query parameter of every GET operation (path
    parameters filled with a real job's id); ``"GET /path ?param"`` → status."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
    job = httpx.post(
        f"{url}/v1/jobs",
        json={"entrypoint": "true", "scheduled_at": "2099-01-01T00:00:00Z"},
        headers=headers,
        timeout=10,
    ).json()
    answers: dict[str, int] = {}
    with httpx.Client(headers=headers, timeout=20) as http:
        for path, item in schema["paths"].items():
            get = item.get("get")
            if get is None or path == "/v1/events/stream":
                continue
            params = get.get("parameters", [])
            filled = path
            for p in params:
                if p.get("in") == "path":
                    filled = filled.replace("{" + p["name"] + "}", str(job["id"]))
            for p in params:
                types = {p.get("schema", {}).get("type")} | {
                    s.get("type") for s in p.get("schema", {}).get("anyOf", [])
                }
                if p.get("in") != "query" or "integer" not in types:
                    continue
                query = {p["name"]: str(10**22)}
                try:  # streamed: only the status is read (event streams never end)
                    with http.stream("GET", url + filled, params=query) as resp:
                        status = resp.status_code
                except httpx.HTTPError:
                    status = 599
                answers[f"GET {path} ?{p['name']}"] = status
    return answers
