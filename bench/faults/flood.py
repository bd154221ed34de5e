"""Scenario 6: slow clients and floods against one ``jobyard serve`` (SQLite): 1,000
idle TCP connections, a client reading a followed log very slowly, and 10,000 event
stream subscribers that open and close. Meanwhile a probe asks ``/healthz`` every 50 ms
on a new connection (as a liveness probe does) and the server's RSS is sampled."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
from bench.faults.common import (
    Outcome,
    ServeProc,
    dist,
    job_python,
    kill_processes_under,
    temp_dir,
    wait_until,
)

HEALTHZ_TARGET_MS = 100.0
#: a job that writes ≈ 2 MB/s of log for ``argv[1]`` seconds
CHATTY = """\
import sys, time
end = time.time() + float(sys.argv[1]); n = 0
while time.time() < end:
    n += 1
    sys.stdout.write(("%08d " % n) + "y" * 990 + "\\n")
    if n % 100 == 0:
        sys.stdout.flush(); time.sleep(0.05)
print("chatty done", flush=True)
"""


def _healthz(port: int) -> bool:
    """``GET /healthz`` on a new connection (raw socket: no client set-up in the time)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@dataclass
class Probe:
    """``/healthz`` every ``interval`` s on a new connection; latencies (ms) per phase."""

    port: int
    interval: float = 0.05
    phase: str = "baseline"
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            phase = self.phase
            started = time.perf_counter()
            ok = _healthz(self.port)
            ms = (time.perf_counter() - started) * 1000
            if ok:
                self.latencies.setdefault(phase, []).append(ms)
            else:
                self.failures[phase] = self.failures.get(phase, 0) + 1
            self.stop.wait(self.interval)


@dataclass
class Rss:
    """The server's RSS every 0.2 s, per phase (MB)."""

    server: ServeProc
    phase: str = "baseline"
    samples: dict[str, list[float]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                mb = self.server.rss_bytes() / 1e6
            except Exception:
                mb = float("nan")
            self.samples.setdefault(self.phase, []).append(mb)
            self.stop.wait(0.2)


def _idle_connections(port: int, count: int, hold_s: float) -> tuple[int, int]:
    """Open ``count`` TCP connections that send nothing; hold them ``hold_s`` seconds.
    Returns (opened, still open at the end)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
        time.sleep(hold_s)  # the flood's duration
        still = 0
        for s in socks:
            s.setblocking(False)
            try:
                still += 1 if s.recv(1) else 0
            except BlockingIOError:
                still += 1  # nothing to read and not closed: still open
            except OSError:
                pass
        return len(socks), still
    finally:
        for s in socks:
            s.close()


def _slow_reader(url: str, key: str, job_id: str, seconds: float) -> int:
    """Follow the job's log, reading 1 KB every 100 ms; returns the bytes read."""
    got = 0
    with (
        httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        http.stream("GET", f"{url}/v1/jobs/{job_id}/logs", params={"follow": "true"}) as resp,
    ):
        end = time.monotonic() + seconds
        for chunk in resp.iter_raw(1024):
            got += len(chunk)
            if time.monotonic() > end:
                break
            time.sleep(0.1)  # the slow client
    return got


async def _subscribers(port: int, key: str, total: int, concurrency: int) -> dict[str, int]:
    """``total`` clients open ``GET /v1/events/stream``, wait for its head, and close."""
    counts: dict[str, int] = {}
    request = (
        f"GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    queue = iter(range(total))

    async def one() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            return head.split(b" ", 2)[1].decode()
        finally:
            writer.close()

    async def worker() -> None:
        for _ in queue:
            try:
                label = await one()
            except Exception as exc:
                label = type(exc).__name__
            counts[label] = counts.get(label, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


def _subscribers_main(port: int, key: str, total: int, concurrency: int) -> dict[str, int]:
    return asyncio.run(_subscribers(port, key, total, concurrency))


def _subscribers_elsewhere(port: int, key: str, total: int, concurrency: int) -> dict[str, int]:
    """:func:`_subscribers` in a process of its own, so that the flood's CPU does not
    delay this process's ``/healthz`` probe (the GIL)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        counts: dict[str, int] = pool.apply(_subscribers_main, (port, key, total, concurrency))
    return counts


def run_flood(quick: bool = False) -> Outcome:
    out = Outcome("slow clients and floods", "sqlite")
    idle_n, subs_n = (200, 1_000) if quick else (1_000, 10_000)
    hold_s = 5.0 if quick else 15.0
    root, remove = temp_dir("jobyard-faults-flood-")
    server = ServeProc(root / "home")
    probe: Probe | None = None
    rss: Rss | None = None
    threads: list[threading.Thread] = []
    try:
        server.start()
        key = server.api_key()
        http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10)
        # warm up: one of each thing the flood does (a job run and its log followed, the
        # event stream), so that the baseline already holds what a first use loads
        http.get(f"{server.url}/v1/jobs")
        warm = http.post(
            f"{server.url}/v1/jobs", json={"entrypoint": [job_python(), "-c", CHATTY, "0.5"]}
        ).json()
        _slow_reader(server.url, key, warm["id"], 0.3)
        asyncio.run(_subscribers(server.port, key, 5, 1))
        probe, rss = Probe(server.port), Rss(server)
        threads = [threading.Thread(target=t.run, daemon=True) for t in (probe, rss)]
        for t in threads:
            t.start()
        time.sleep(3)  # baseline samples
        phases = ["baseline", f"{idle_n} idle connections", "slow log reader"]
        phases += [f"{subs_n} SSE subscribers", "after (10 s)"]
        probe.phase = rss.phase = phases[1]
        opened, still = _idle_connections(server.port, idle_n, hold_s)
        probe.phase = rss.phase = "slow log reader"
        job = http.post(
            f"{server.url}/v1/jobs",
            json={"entrypoint": [job_python(), "-c", CHATTY, str(hold_s)]},
        ).json()
        wait_until(lambda: http.get(f"{server.url}/v1/jobs/{job['id']}").json()["status"]
                   == "running", 30)  # fmt: skip
        read = _slow_reader(server.url, key, job["id"], hold_s)
        log_size = int(
            http.get(f"{server.url}/v1/jobs/{job['id']}/logs", params={"tail": 1}).headers.get(
                "X-Log-Next-Offset", "0"
            )
        )
        probe.phase = rss.phase = f"{subs_n} SSE subscribers"
        started = time.monotonic()
        answers = _subscribers_elsewhere(server.port, key, subs_n, 100)
        subs_s = time.monotonic() - started
        probe.phase = rss.phase = "after (10 s)"
        time.sleep(10)  # recovery samples
        alive = server.running
        for phase in phases:
            lat = probe.latencies.get(phase, [])
            fails = probe.failures.get(phase, 0)
            out.add(
                f"/healthz during: {phase}",
                dist(lat, "ms", 1)
                + (f"; {fails} failed" if fails else "")
                + f" ({len(lat)} probes)",
                f"≤ {HEALTHZ_TARGET_MS:.0f} ms",
                bool(lat) and max(lat) <= HEALTHZ_TARGET_MS and not fails,
            )
        base = min(rss.samples.get("baseline", [0.0]))
        peak = max(max(v) for v in rss.samples.values())
        after = rss.samples.get("after (10 s)", [float("nan")])[-1]
        out.add(
            "server RSS before / peak during / 10 s after (MB)",
            f"{base:.1f} / {peak:.1f} / {after:.1f}",
            "≤ 110 % of baseline",
            after <= base * 1.1,
        )
        for phase, values in rss.samples.items():
            out.notes.append(
                f"RSS during {phase}: max {max(values):.1f} MB, last {values[-1]:.1f} MB"
            )
        out.add(f"idle connections opened / still open after {hold_s:.0f} s", f"{opened} / {still}")
        out.add(
            "slow reader: bytes read in its time / log size",
            f"{read / 1e3:.0f} KB in {hold_s:.0f} s / {log_size / 1e6:.1f} MB",
        )
        out.add(
            f"{subs_n} SSE subscribers: answers",
            ", ".join(f"{k} ×{v}" for k, v in sorted(answers.items()))
            + f" in {subs_s:.1f} s ({subs_n / subs_s:.0f}/s)",
            "all 200",
            set(answers) == {"200"},
        )
        out.add("server alive at the end", alive, "yes", alive)
        http.close()
        return out
    finally:
        if probe is not None:
            probe.stop.set()
        if rss is not None:
            rss.stop.set()
        for th in threads:
            th.join(10)
        server.close()
        kill_processes_under(root)
        remove()
