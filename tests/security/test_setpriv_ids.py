"""Who a sandboxed job runs as when ``setpriv`` is given its user and group by name (a
lookup that stays in ``/etc/passwd``) instead of by number: the same uid, gid,
supplementary groups, no new privileges and no capabilities, checked in real sandboxes;
and the names are given only when the job's ``/etc`` maps them to the server's ids."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from jobyard.executors import sandbox
from jobyard.executors.base import LaunchSpec
from tests.support.sandbox import require_sandbox

pytestmark = [pytest.mark.acceptance]

NOBODY = pwd.getpwnam("nobody")
GROUP = grp.getgrgid(NOBODY.pw_gid).gr_name
WHO = (
    "id -u; id -g; id -G; "
    "grep -E '^(Uid|Gid|Groups|NoNewPrivs|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/self/status"
)


def _run(box: sandbox.Sandbox, work: Path, *, numeric: bool) -> tuple[list[str], str]:
    """The job's view of itself in a real sandbox, and the argv that started it."""
    argv = ["/bin/sh", "-c", WHO]
    spec = LaunchSpec(
        job_id="who",
        attempt=1,
        entrypoint=None,
        argv=tuple(argv),
        workdir=work,
        log_path=work.parent / "log",
        env={"PATH": "/usr/bin:/bin"},
    )
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        args = box.command(spec, argv, status_fd=null)
        if numeric:  # what jobyard passed before: the ids
            ids = {f"--reuid={NOBODY.pw_name}": f"--reuid={NOBODY.pw_uid}"}
            ids[f"--regid={GROUP}"] = f"--regid={NOBODY.pw_gid}"
            args = [ids.get(a, a) for a in args]
        done = subprocess.run(
            args, cwd=work, env=spec.env, pass_fds=(null,), capture_output=True, text=True
        )
    finally:
        os.close(null)
    assert done.returncode == 0, done.stderr
    return args, done.stdout


def test_a_job_started_by_name_has_the_ids_groups_and_privileges_of_one_started_by_id(
    tmp_path: Path,
) -> None:
    require_sandbox()
    tmp_path.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    box, support = sandbox.detect(node_id="setpriv-ids", data_dir=tmp_path / "data", pids_max=None)
    assert box is not None, support.reason
    assert box.host_etc
    by_name, named = _run(box, work, numeric=False)
    by_id, numbered = _run(box, work, numeric=True)
    assert f"--reuid={NOBODY.pw_name}" in by_name and f"--regid={GROUP}" in by_name
    assert f"--reuid={NOBODY.pw_uid}" in by_id and f"--regid={NOBODY.pw_gid}" in by_id
    assert named == numbered
    lines = named.splitlines()
    assert lines[:3] == [str(NOBODY.pw_uid), str(NOBODY.pw_gid), str(NOBODY.pw_gid)]
    status = dict(line.split(":", 1) for line in lines[3:])
    assert status["Uid"].split() == [str(NOBODY.pw_uid)] * 4
    assert status["Gid"].split() == [str(NOBODY.pw_gid)] * 4
    assert status["Groups"].split() == []
    assert status["NoNewPrivs"].strip() == "1"
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps], 16) == 0, (caps, status[caps])


def _etc(tmp: Path, *, nsswitch: str, passwd: str, group: str) -> Path:
    etc = tmp / "etc"
    etc.mkdir()
    (etc / "nsswitch.conf").write_text(nsswitch)
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)
    return etc


NSS = "# comment\npasswd:         files systemd\ngroup:  files systemd\nhosts: dns\n"
ENTRY = f"{NOBODY.pw_name}:x:{NOBODY.pw_uid}:{NOBODY.pw_gid}:nobody:/nonexistent:/bin/false\n"
GROUP_ENTRY = f"{GROUP}:x:{NOBODY.pw_gid}:\n"
NUMBERS = (str(NOBODY.pw_uid), str(NOBODY.pw_gid))


@pytest.mark.parametrize(
    ("nsswitch", "passwd", "group", "expected"),
    [
        (NSS, f"root:x:0:0::/root:/bin/sh\n{ENTRY}", GROUP_ENTRY, (NOBODY.pw_name, GROUP)),
        ("hosts: files\n", ENTRY, GROUP_ENTRY, (NOBODY.pw_name, GROUP)),  # glibc: files
        ("passwd: systemd files\ngroup: files\n", ENTRY, GROUP_ENTRY, NUMBERS),
        ("passwd: files\ngroup: sss files\n", ENTRY, GROUP_ENTRY, NUMBERS),
        (
            NSS,
            f"{NOBODY.pw_name}:x:4242:{NOBODY.pw_gid}::/:/bin/false\n{ENTRY}",
            GROUP_ENTRY,
            NUMBERS,
        ),
        (NSS, f"{NOBODY.pw_name}:x:{NOBODY.pw_uid}:4242::/:/bin/false\n", GROUP_ENTRY, NUMBERS),
        (NSS, "root:x:0:0::/root:/bin/sh\n", GROUP_ENTRY, NUMBERS),  # not in the files
        (NSS, ENTRY, f"{GROUP}:x:4242:\n", NUMBERS),
        (NSS, ENTRY, "", NUMBERS),
    ],
)
def test_setpriv_gets_names_only_where_the_jobs_etc_maps_them_to_the_same_ids(
    tmp_path: Path, nsswitch: str, passwd: str, group: str, expected: tuple[str, str]
) -> None:
    etc = _etc(tmp_path, nsswitch=nsswitch, passwd=passwd, group=group)
    assert sandbox.setpriv_ids("nobody", by_name=True, etc=etc) == expected
    assert sandbox.setpriv_ids("nobody", by_name=False, etc=etc) == NUMBERS


def test_setpriv_gets_the_ids_when_the_files_cannot_be_read(tmp_path: Path) -> None:
    assert sandbox.setpriv_ids("nobody", by_name=True, etc=tmp_path / "missing") == NUMBERS
