"""``one_write``: an answer's head and body leave in one socket write, in order, and a
write that nothing follows still leaves by the end of the event loop's turn."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from jobyard.one_write import OneWriteProtocol, OneWriteTransport


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", b""))

    def write_eof(self) -> None:
        self.calls.append(("eof", b""))

    def abort(self) -> None:
        self.calls.append(("abort", b""))


async def _turn() -> None:
    await asyncio.sleep(0)  # the callbacks scheduled so far run first


def test_a_head_and_its_body_leave_in_one_write() -> None:
    async def main() -> list[tuple[str, bytes]]:
        inner = Recorder()
        t = OneWriteTransport(inner)
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert inner.calls == []
        t.write(b"body")
        assert inner.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\nbody")]
        await _turn()
        return inner.calls

    assert asyncio.run(main()) == [("write", b"HTTP/1.1 200 OK\r\n\r\nbody")]


def test_a_lone_write_leaves_at_the_end_of_the_turn_and_order_is_kept() -> None:
    async def main() -> list[tuple[str, bytes]]:
        inner = Recorder()
        t = OneWriteTransport(inner)
        t.write(b"head")
        await _turn()
        assert inner.calls == [("write", b"head")]
        t.write(b"a")
        t.write(b"b")
        t.write(b"c")
        t.close()
        await _turn()
        return inner.calls

    assert asyncio.run(main()) == [
        ("write", b"head"),
        ("write", b"ab"),
        ("write", b"c"),
        ("close", b""),
    ]


def test_eof_flushes_and_abort_drops_what_is_held() -> None:
    async def main() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
        first, second = Recorder(), Recorder()
        t = OneWriteTransport(first)
        t.write(b"x")
        t.write_eof()
        u = OneWriteTransport(second)
        u.write(b"y")
        u.abort()
        await _turn()
        return first.calls, second.calls

    assert asyncio.run(main()) == ([("write", b"x"), ("eof", b"")], [("abort", b"")])


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"one", "more_body": True})
    await asyncio.sleep(0.01)  # a streamed answer: its next part comes later
    await send({"type": "http.response.body", "body": b"two"})


def test_a_streamed_answer_arrives_whole_through_uvicorn() -> None:
    async def main() -> bytes:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(_app, http=OneWriteProtocol, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()  # to EOF
        writer.close()
        server.should_exit = True
        await task
        return answer

    answer = asyncio.run(main())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
