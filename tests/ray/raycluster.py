"""A real Ray head node for the tests: ``ray start --head --block`` (the venv's Ray) on
127.0.0.1 with free ports of its own, in a session of its own.

It is stopped by killing the processes of that session (and everything below the head
process), not with ``ray stop --force``: that would kill every Ray process of the
machine, also those of other users of this shared host. A SIGKILL of the head is what a
crashed or stopped cluster looks like to jobyard."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

from tests.conftest import wait_for

RAY = str(Path(sys.executable).parent / "ray")
START_TIMEOUT_S = 180.0  #: Ray's start is slow on 2 shared cores


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class RayHead:
    def __init__(self, log_path: Path, temp_dir: Path | None = None) -> None:
        """``temp_dir``: Ray's session files (a short path: its unix sockets live below
        it); by default a new directory, removed by :meth:`close`."""
        self.log_path = log_path
        ports = _free_ports(9)
        self.ports = dict(
            zip(
                (
                    "port",
                    "dashboard-port",
                    "dashboard-agent-listen-port",
                    "dashboard-agent-grpc-port",
                    "runtime-env-agent-port",
                    "metrics-export-port",
                    "node-manager-port",
                    "object-manager-port",
                    "ray-client-server-port",
                ),
                ports,
                strict=True,
            )
        )
        self._own_dir = temp_dir is None
        self.temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="jyray-", dir="/tmp"))
        self.address = f"http://127.0.0.1:{self.ports['dashboard-port']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RayHead:
        # workers take Ray's default range (10002-19999), below the kernel's ephemeral
        # ports, from which the free ports of the tests (and of the jobyard server) come
        args = [f"--{name}={port}" for name, port in self.ports.items()]
        cmd = [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            "--include-dashboard=true",
            "--num-cpus=2",
            "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "JOBYARD_"))}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PIP_NO_INDEX"] = "1"  # Ray's pip environments: nothing beyond this host
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, timeout=START_TIMEOUT_S, interval=0.5)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"ray start exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}"
            )
        try:
            r = httpx.get(f"{self.address}/api/v0/nodes?limit=10", timeout=2)
            nodes = r.json()["data"]["result"]["result"] if r.status_code == 200 else []
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return False
        return any(n.get("state") == "ALIVE" for n in nodes)

    def kill(self) -> None:
        """SIGKILL every process of the cluster (and of its jobs); wait until they are gone."""
        if self.proc is None:
            return
        procs: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(p.pid) == self.proc.pid and p not in procs:
                    procs.append(p)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=20)
        self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
