"""The private directories of Ray attempts on a worker (raywrap): each is marked with
its wrapper process; a directory whose wrapper died without removing it (killed by
Ray's SIGKILL at the end of a stop's grace) is removed by the next attempt's wrapper,
while those of live wrappers stay. Real processes, real directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobyard.executors import raywrap


def test_leftovers_of_dead_wrappers_are_removed_those_of_live_ones_stay(tmp_path: Path) -> None:
    # a wrapper that made its directory and was killed before it could remove it
    code = (
        "import sys; from pathlib import Path; from jobyard.executors import raywrap\n"
        "root = raywrap.make_private_dir(Path(sys.argv[1]))\n"
        "(root / 'work' / 'sub').mkdir(parents=True)\n"
        "(root / 'work' / 'sub' / 'f').write_text('x')\n"
        "(root / 'work' / 'sub').chmod(0o500)\n"  # as a sandboxed job may leave it
        "print(root, flush=True)\n"
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    dead = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert dead.returncode == -9, dead.stderr
    dead_root = Path(dead.stdout.strip())
    assert dead_root.is_dir() and dead_root.name.startswith(raywrap.PRIVATE_PREFIX)

    live_root = raywrap.make_private_dir(tmp_path)  # this process: alive
    unmarked = tmp_path / f"{raywrap.PRIVATE_PREFIX}being-made"  # no owner yet
    unmarked.mkdir()
    other = tmp_path / "not-ours"
    other.mkdir()

    assert raywrap.sweep_leftovers(tmp_path) == 1
    assert not dead_root.exists()
    assert live_root.is_dir() and unmarked.is_dir() and other.is_dir()


def test_a_reused_pid_does_not_keep_a_leftover(tmp_path: Path) -> None:
    """The owner is the pid with its start time: another process now holding that pid
    (here: this one, with a start time that is not its own) is not the owner."""
    root = tmp_path / f"{raywrap.PRIVATE_PREFIX}x"
    root.mkdir()
    (root / raywrap.OWNER_FILE).write_text(f"{os.getpid()} 1")
    assert raywrap.sweep_leftovers(tmp_path) == 1
    assert not root.exists()
