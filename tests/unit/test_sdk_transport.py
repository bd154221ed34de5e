"""The SDK's own keep-alive transport (``jobyard.sdk.transport``) against a scripted
loopback HTTP/1.1 server: connection reuse, reconnects, errors, framing, threads, and
that it sends what httpx would send and fails the way httpx fails."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jobyard.sdk import Client, ConnectionFailed, NotFound

TOKEN = "tok-123"


class ScriptedServer:
    """Answers every request with a job ``{"id": <path's last segment>}``; counts the
    connections it accepted and the requests it read. Options:

    - ``drop_request``: on each connection, close without answering its n-th request;
    - ``close_after_answer``: close each connection after its first answer;
    - ``chunked``: answer with ``Transfer-Encoding: chunked`` (and a trailer), gzipped;
    - ``silent``: read requests and never answer.
    """

    def __init__(
        self,
        *,
        drop_request: int | None = None,
        close_after_answer: bool = False,
        chunked: bool = False,
        silent: bool = False,
    ) -> None:
        self.drop_request = drop_request
        self.close_after_answer = close_after_answer
        self.chunked = chunked
        self.silent = silent
        self.accepted = 0
        self.targets: list[str] = []
        self.closed = threading.Event()  # set when close_after_answer has closed one
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        served = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:])
                length = int(headers.get("Content-Length", "0"))
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                served += 1
                with self._lock:
                    self.targets.append(lines[0].split(" ")[1])
                if served == self.drop_request:
                    return
                if self.silent:
                    self.stop.wait()
                    return
                conn.sendall(self._answer(lines[0].split(" ")[1]))
                if self.close_after_answer:
                    conn.close()
                    self.closed.set()
                    return

    def _answer(self, target: str) -> bytes:
        job_id = target.split("?")[0].rsplit("/", 1)[-1]
        body = json.dumps({"id": job_id, "status": "queued"}).encode()
        if not self.chunked:
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            )
            return head.encode() + b"\r\n\r\n" + body
        packer = zlib.compressobj(wbits=31)
        gz = packer.compress(body) + packer.flush()
        half = len(gz) // 2
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (gz[:half], gz[half:]))
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-Trailer: 1\r\n\r\n"
        )

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    made: list[ScriptedServer] = []

    def make(**options: Any) -> ScriptedServer:
        made.append(ScriptedServer(**options))
        return made[-1]

    yield make
    for s in made:
        s.close()


def via_httpx(url: str, **kwargs: Any) -> Client:
    """The same client on httpx's own network transport, to compare with."""
    return Client(url, TOKEN, transport=httpx.HTTPTransport(), **kwargs)


def failure(client: Client, job_id: str = "j") -> ConnectionFailed:
    with client, pytest.raises(ConnectionFailed) as info:
        client.get(job_id)
    return info.value


def test_calls_reuse_one_connection(scripted: Any) -> None:
    server = scripted()
    with Client(server.url, TOKEN) as c:
        assert c._fast is not None
        for n in range(50):
            assert c.get(f"job-{n}").id == f"job-{n}"
        c.submit("true")
        c.cancel("job-1")
    assert server.accepted == 1
    assert len(server.targets) == 52


def test_reconnects_after_the_server_closed_an_idle_connection(scripted: Any) -> None:
    server = scripted(close_after_answer=True)
    with Client(server.url, TOKEN) as c:
        assert c.get("a").id == "a"
        assert server.closed.wait(10)
        assert c.get("b").id == "b"
    assert server.accepted == 2
    assert server.targets == ["/v1/jobs/a", "/v1/jobs/b"]


def test_sends_once_more_when_a_reused_connection_drops_the_request(scripted: Any) -> None:
    server = scripted(drop_request=2)  # as if it closed the idle connection just then
    with Client(server.url, TOKEN) as c:
        assert c.get("a").id == "a"
        assert c.get("b").id == "b"
    assert server.accepted == 2
    assert server.targets == ["/v1/jobs/a", "/v1/jobs/b", "/v1/jobs/b"]


def test_a_new_connection_that_drops_the_request_is_not_retried(scripted: Any) -> None:
    server = scripted(drop_request=1)
    ours = failure(Client(server.url, TOKEN))
    assert server.targets == ["/v1/jobs/j"]  # sent once
    theirs = failure(via_httpx(server.url))
    assert ours.message == theirs.message
    assert "Server disconnected without sending a response" in ours.message


def test_server_down_gives_the_same_error_as_httpx() -> None:
    with socket.socket() as reserved:  # bound, not listening: connections are refused
        reserved.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        ours, theirs = failure(Client(url, TOKEN)), failure(via_httpx(url))
        with Client(url, TOKEN) as c:
            assert not c.health()
    assert type(ours) is type(theirs) is ConnectionFailed
    assert ours.message == theirs.message
    assert ours.message.startswith(f"cannot reach the jobyard server at {url} (")
    assert "jobyard serve" in ours.message


def test_the_timeout_is_honoured_like_httpx(scripted: Any) -> None:
    server = scripted(silent=True)
    ours = failure(Client(server.url, TOKEN, timeout=0.2))
    theirs = failure(via_httpx(server.url, timeout=0.2))
    assert ours.message == theirs.message
    assert "ReadTimeout" in ours.message


def test_chunked_gzip_answers_and_trailers(scripted: Any) -> None:
    server = scripted(chunked=True)
    with Client(server.url, TOKEN) as c:
        assert [c.get(n).id for n in ("a", "b", "c")] == ["a", "b", "c"]
    assert server.accepted == 1  # the trailer was read: the connection stayed usable


def test_many_threads_share_one_client(scripted: Any) -> None:
    server = scripted()
    threads, calls = 8, 25
    start = threading.Barrier(threads)
    seen: list[str] = []
    errors: list[BaseException] = []
    with Client(server.url, TOKEN) as c:

        def work(t: int) -> None:
            try:
                start.wait()
                seen.extend(c.get(f"t{t}-{n}").id for n in range(calls))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert errors == []
    assert sorted(seen) == sorted(f"t{t}-{n}" for t in range(threads) for n in range(calls))
    assert 1 <= server.accepted <= threads  # at most one connection per concurrent thread


def _get_in_child(c: Client, out: Any) -> None:
    out.send(c.get("child").id)


def test_a_forked_child_opens_its_own_connection(scripted: Any) -> None:
    server = scripted()
    with Client(server.url, TOKEN) as c:
        assert c.get("parent").id == "parent"  # one idle connection, then fork
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_get_in_child, args=(c, send))
        child.start()
        assert recv.recv() == "child"
        child.join()
        assert child.exitcode == 0
        assert c.get("again").id == "again"
    assert server.accepted == 2  # the child's own, and the parent's kept its
    assert sorted(server.targets) == ["/v1/jobs/again", "/v1/jobs/child", "/v1/jobs/parent"]


@pytest.mark.parametrize(
    "params",
    [
        None,
        {},
        {"limit": 50},
        [("status", "queued"), ("status", "running"), ("limit", 10)],
        {"q": "a b/é&=+?#", "flag": True, "off": False, "none": None, "x": 0.5},
        {"many": ["a", "b"]},
    ],
)
@pytest.mark.parametrize("base", ["", "/prefix", "/prefix/"])
def test_sends_the_target_httpx_would_send(scripted: Any, params: Any, base: str) -> None:
    server = scripted()
    with Client(server.url + base, TOKEN) as c:
        for path in ("/v1/jobs", "/v1/jobs/a%2Fb", "/v1/jobs/..%2Fx", "/v1/jobs/a b/é"):
            c._request("GET", path, params=params)
            want = c._http.build_request("GET", path, params=params).url.raw_path.decode()
            assert server.targets[-1] == want


PROXY = "http://proxy.invalid:3128"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HTTP_PROXY": PROXY},
        {"HTTP_PROXY": PROXY, "NO_PROXY": "jobyard.test"},
        {"https_proxy": PROXY},
        {"ALL_PROXY": PROXY},
        {"ALL_PROXY": PROXY, "NO_PROXY": "127.0.0.1,localhost"},
        {"HTTP_PROXY": PROXY, "NO_PROXY": "*"},
    ],
)
@pytest.mark.parametrize(
    "url", ["http://jobyard.test:8000", "https://jobyard.test", "http://127.0.0.1:9"]
)
def test_leaves_requests_to_httpx_exactly_when_httpx_would_use_a_proxy(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str
) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with Client(url, TOKEN) as c:
        http = c._http
        proxied = http._transport_for_url(http.base_url) is not http._transport
        assert (c._fast is None) is proxied
    if env.get("ALL_PROXY") and "NO_PROXY" not in env:
        assert proxied  # the cases do cover both answers


def test_keys_and_urls_the_transport_cannot_send_go_to_httpx(scripted: Any) -> None:
    with pytest.raises(UnicodeEncodeError):  # at construction, like before
        Client("http://jobyard.test", "clé")
    server = scripted()
    with Client(server.url, "a\nb") as c:
        assert c._fast is None
        with pytest.raises(ConnectionFailed, match="Illegal header value"):  # httpx's refusal
            c.get("x")
    assert server.targets == []
    with Client("http://", TOKEN) as c:
        assert c._fast is None
    for kwargs in ({"headers": {"Accept": "text/plain"}}, {"params": "a=1"}, {"content": b"x"}):
        with Client(server.url, TOKEN) as c:
            c._request("POST", "/v1/jobs/x", **kwargs)
            assert c._http_client is not None  # httpx sent it
    assert server.targets == ["/v1/jobs/x", "/v1/jobs/x?a=1", "/v1/jobs/x"]


def test_a_transport_argument_leaves_requests_to_httpx() -> None:
    with Client(
        "http://jobyard.test", TOKEN, transport=httpx.MockTransport(lambda _: httpx.Response(200))
    ) as c:
        assert c._fast is None


def test_a_closed_client_refuses_like_httpx(scripted: Any) -> None:
    server = scripted()
    ours, theirs = Client(server.url, TOKEN), via_httpx(server.url)
    for c in (ours, theirs):
        c.get("a")
        c.close()
    with pytest.raises(RuntimeError) as mine:
        ours.get("b")
    with pytest.raises(RuntimeError) as other:
        theirs.get("b")
    assert str(mine.value) == str(other.value)
    with pytest.raises(RuntimeError, match="closed"):  # httpx, made after close()
        list(ours.follow_logs("a"))


def test_httpx_is_made_only_when_needed(scripted: Any) -> None:
    server = scripted()
    with Client(server.url, TOKEN) as c:
        c.get("a")
        assert c._http_client is None  # plain calls do not need it
        assert str(c._http.base_url) == server.url


def test_error_answers_still_raise_api_errors(scripted: Any) -> None:
    class NotFoundServer(ScriptedServer):
        def _answer(self, target: str) -> bytes:
            body = b'{"code":"NOT_FOUND","message":"job x does not exist","details":{}}'
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    server = NotFoundServer()
    try:
        with Client(server.url, TOKEN) as c:
            for _ in range(2):
                with pytest.raises(NotFound) as info:
                    c.get("x")
                assert (info.value.status_code, info.value.message) == (404, "job x does not exist")
        assert server.accepted == 1  # an error answer does not cost the connection
    finally:
        server.close()
