"""The next job's directory is made ahead (``jobs/.spare``) when a job ends, and a
first attempt takes it by one rename: the same empty ``work/input``, ``work/output`` and
``logs`` a fresh one has. A retry, or a job that unpacks files first, makes its own."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobSpec
from jobyard.domain.states import TERMINAL, JobState
from jobyard.storage.workspace import SPARE, Workspace
from jobyard.wiring import Services
from tests.conftest import ServicesFactory, wait_for

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)
#: what the job sees of its directory: the entries, and whether it may write input/
LOOK = (
    "import os; print(sorted(os.listdir('.')), sorted(os.listdir('input')),"
    " sorted(os.listdir('output')), os.access('input', os.W_OK))"
)


def test_a_spare_is_taken_once_and_never_over_a_job_directory(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert not ws.take_spare("a")  # none made yet
    ws.make_spare()
    ws.make_spare()  # there is one already: kept
    spare = ws.root / SPARE
    inode = spare.stat().st_ino
    (ws.job_dir("b") / "logs").mkdir(parents=True)
    (ws.job_dir("b") / "logs" / "attempt-1.log").write_text("attempt 1\n")
    assert not ws.take_spare("b")  # a retry's directory holds its earlier logs
    assert (ws.job_dir("b") / "logs" / "attempt-1.log").read_text() == "attempt 1\n"
    assert ws.take_spare("a")
    made = ws.job_dir("a")
    assert made.stat().st_ino == inode and not spare.exists()
    assert sorted(str(p.relative_to(made)) for p in made.rglob("*")) == [
        "logs",
        "work",
        "work/input",
        "work/output",
    ]
    assert not ws.take_spare("c")  # taken: the next job makes its own


def _run(services: Services, argv: tuple[str, ...]) -> tuple[str, str]:
    job, _ = services.jobs.submit(ADMIN, JobSpec(argv=argv))
    done = wait_for(lambda: (j := services.jobs.get(ADMIN, job.id)).state in TERMINAL and j)
    assert done.state is JobState.SUCCEEDED, done.message
    return job.id, services.logs.read_log(ADMIN, job.id).data.decode()


def test_the_next_job_takes_the_directory_made_ahead(make_services: ServicesFactory) -> None:
    services = make_services()
    assert services.dispatcher is not None
    ws = services.dispatcher.runner.workspace
    first, first_log = _run(services, (PY, "-c", LOOK))
    spare = wait_for(lambda: (ws.root / SPARE).exists() and ws.root / SPARE)  # made as it ended
    inode = spare.stat().st_ino
    second, second_log = _run(services, (PY, "-c", LOOK))
    assert ws.job_dir(second).stat().st_ino == inode  # the spare, renamed
    for job_id in (first, second):  # the empty input/ read-only, made either way
        assert (ws.workdir(job_id) / "input").stat().st_mode & 0o777 == 0o555
        assert json.loads((ws.workdir(job_id) / "parameters.json").read_text()) == {}
    # what each job saw of its directory is the same, made either way
    seen = first_log.strip().splitlines()[-1]
    assert seen.startswith("['input', 'output', 'parameters.json'] [] []")
    assert second_log.strip().splitlines()[-1] == seen


def test_parameters_of_a_fresh_directory_are_written_in_place(tmp_path: Path) -> None:
    """In a directory just made (``fresh``) ``parameters.json`` is written as a new file,
    without a temporary name; one already there is refused, not overwritten. Otherwise
    it is replaced through a temporary name."""
    ws = Workspace(tmp_path)
    ws.workdir("a").mkdir(parents=True)
    made: list[str] = []
    real_open = os.open

    def watch(path: str, flags: int, mode: int = 0o777) -> int:
        made.append(os.path.basename(path))
        return real_open(path, flags, mode)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "open", watch)
        path = ws.write_parameters("a", {"x": 1}, fresh=True)
    assert made == ["parameters.json"]
    assert json.loads(path.read_text()) == {"x": 1}
    with pytest.raises(FileExistsError):
        ws.write_parameters("a", {"x": 2}, fresh=True)
    assert json.loads(path.read_text()) == {"x": 1}
    ws.write_parameters("a", {"x": 3})  # not fresh: replaced
    assert json.loads(path.read_text()) == {"x": 3}
    assert sorted(os.listdir(ws.workdir("a"))) == ["parameters.json"]
