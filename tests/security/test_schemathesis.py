"""Schemathesis against the live server's ``/openapi.json``: every operation, with an
admin key of the default tenant, a bounded number of generated requests each (valid
ones, then invalid ones).

- :func:`test_no_server_error_and_every_answer_matches_its_schema`: no 5xx, every
  answer's body matches its declared schema and content type;
- :func:`test_every_status_code_is_documented`: every status code answered is declared
  in the operation's ``responses``.

One run (module scope) feeds both. SQLite only (the database does not change what the
schema promises), with the dispatcher stopped: generated entrypoints are random shell
text and must never run. Deterministic (``derandomize``) so CI is stable; set
``JOBYARD_SCHEMATHESIS_SEED`` to explore other examples and
``JOBYARD_SCHEMATHESIS_EXAMPLES`` (default 5 per operation and mode) for more.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from jobyard.domain.auth import Role
from jobyard.store.migrate import upgrade
from jobyard.wiring import build_services
from tests.conftest import LiveServer, _free_port, fast_settings

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is a dev dependency: pip install -e '.[dev]'"
)
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.openapi.checks import UndefinedStatusCode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("JOBYARD_SCHEMATHESIS_EXAMPLES", "5"))
SEED = os.environ.get("JOBYARD_SCHEMATHESIS_SEED")
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    status_code_conformance,
]
#: operations left out, each with the reason
EXCLUDED: dict[str, str] = {
    "GET /v1/events/stream": "a Server-Sent Events stream that never ends (by design);"
    " its scoping and filters are covered by tests/integration/test_stream.py and the"
    " isolation matrix",
}


@dataclass
class Findings:
    checked: list[str] = field(default_factory=list)
    #: generated requests sent, and their answers by status code
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    #: operation → full reports (with a curl reproduction) of 5xx and schema breaks
    broken: dict[str, list[str]] = field(default_factory=dict)
    #: operation → status codes answered but not declared, with one reproduction each
    undocumented: dict[str, dict[int, str]] = field(default_factory=dict)
    seconds: float = 0.0


def _fuzz(
    operation: Any, mode: GenerationMode, call: Callable[[Any], None], examples: int = EXAMPLES
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=SEED is None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        call(case)

    if SEED is not None:
        fuzz = seed(int(SEED))(fuzz)
    try:
        fuzz()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # nothing of the operation can be made invalid (no parameters, no body)


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Findings]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    set_hypothesis_home_dir(tmp / "hypothesis")  # not ./.hypothesis in the work tree
    port = _free_port()
    services = build_services(
        fast_settings(
            tmp / "data",
            f"sqlite:///{tmp / 'jobyard.db'}",
            port=port,
            public_url=f"http://127.0.0.1:{port}",
        )
    )
    upgrade(services.db)  # no services.start(): the API without a dispatcher
    services.auth.bootstrap()
    live = LiveServer(services).start()
    _, admin = services.auth.create_key(tenant_id="default", name="fuzzer", role=Role.ADMIN)
    try:
        yield _run(live, admin)
    finally:
        live.stop()
        services.close()


def _run(live: LiveServer, key: str, examples: int = EXAMPLES) -> Findings:
    """Fuzz every operation but ``EXCLUDED`` (also used by ``bench/faults``)."""
    auth = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", timeout=10)
    found = Findings()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in EXCLUDED:
            continue
        found.checked.append(label)

        def call(case: Any, label: str = label) -> None:
            response = case.call(base_url=live.url, headers=auth, timeout=20)
            found.cases += 1
            found.statuses[response.status_code] = found.statuses.get(response.status_code, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS, headers=auth)
            except FailureGroup as group:
                others = [f for f in group.exceptions if not isinstance(f, UndefinedStatusCode)]
                if others:
                    found.broken.setdefault(label, []).append(str(group))
                if len(others) < len(group.exceptions):
                    curl = case.as_curl_command(headers={"Authorization": "Bearer $KEY"})
                    found.undocumented.setdefault(label, {}).setdefault(
                        response.status_code, f"{curl}\n    → {response.text[:200]}"
                    )

        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, call, examples)
    found.seconds = time.monotonic() - started
    return found


def test_every_operation_is_fuzzed(findings: Findings) -> None:
    assert len(findings.checked) >= 80, findings.checked


def test_no_server_error_and_every_answer_matches_its_schema(findings: Findings) -> None:
    report = "\n\n".join(
        f"==== {label} ({len(reports)} failing examples)\n{reports[0]}"
        for label, reports in sorted(findings.broken.items())
    )
    assert not findings.broken, (
        f"schemathesis: {len(findings.broken)} of {len(findings.checked)} operations answered"
        f" a 5xx or broke their response schema (run took {findings.seconds:.0f} s):\n\n{report}"
    )


def test_every_status_code_is_documented(findings: Findings) -> None:
    lines = []
    for label, codes in sorted(findings.undocumented.items()):
        lines.append(f"{label}: {sorted(codes)}")
        lines.extend(f"  {code}: {example}" for code, example in sorted(codes.items()))
    assert not findings.undocumented, (
        f"{len(findings.undocumented)} operations answer status codes their OpenAPI"
        " `responses` do not declare:\n" + "\n".join(lines)
    )
