"""A small HTTP/1.1 keep-alive transport for the SDK's plain JSON requests.

httpx costs ≈ 0.45 ms of client CPU per request on a 2-core machine (URL and header
objects, the auth and hook machinery, httpcore's state machine); a whole
``Client.submit`` through this transport costs ≈ 0.07 ms (bench/w3_submit.py --null-server).
It serves requests without streaming or uploads on ``http://`` and ``https://`` URLs
that httpx would send without a proxy, and raises the same ``httpx`` exceptions that
httpx would, so error handling stays in one place (:meth:`BaseClient._connection_error`).

- Connections are pooled (LIFO, one in use per thread at a time), so one client used from
  several threads opens one connection per concurrent thread and reuses them.
- An idle connection that the server has closed is noticed before reuse (the socket is
  readable) and replaced. If the server closes it at the same moment instead, the
  request is sent once more on a new connection, but only when no byte of an answer
  arrived: a server that closes an idle connection has not read the request on it.
- A child process made with ``fork`` opens its own connections.
- ``timeout`` applies to connecting and to every send and receive, like httpx's.
- ``https://`` uses httpx's own TLS settings (``httpx.create_ssl_context()``: certifi, or
  ``SSL_CERT_FILE``/``SSL_CERT_DIR``) with certificate and host name verification.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import struct
import weakref
import zlib
from collections import deque
from dataclasses import dataclass

import httpx

_MAX_HEAD = 64 * 1024
_RECV = 64 * 1024
_MAX_RECV = 1024 * 1024

#: every transport, so that a forked child forgets the connections it shares with its parent
_ALL: weakref.WeakSet[FastTransport] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    for transport in list(_ALL):
        transport._idle = deque()  # the parent keeps using them; the child opens its own


os.register_at_fork(after_in_child=_forget_connections_after_fork)


@dataclass(slots=True)
class RawResponse:
    """An answer read in full: status, raw header pairs and the (decoded) body."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    content: bytes

    def to_httpx(self) -> httpx.Response:
        """The same answer as an ``httpx.Response`` (for error mapping and generic callers)."""
        return httpx.Response(self.status_code, headers=self.headers, content=self.content)


class _Dropped(Exception):
    """The connection broke before any byte of an answer arrived (safe to send again)."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class _Conn:
    __slots__ = ("buf", "poller", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.poller = select.poll()  # no FD_SETSIZE limit, unlike select()
        self.poller.register(sock, select.POLLIN)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def stale(self) -> bool:
        """Whether the idle connection has data or EOF waiting (the server closed it)."""
        if self.buf:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            return bool(self.poller.poll(0))  # data, EOF, or an error: not reusable
        except OSError:
            return True


#: what a send or receive that timed out raises: Python's own timeout, or EAGAIN from
#: the kernel's (``_kernel_timeouts``)
_TIMEOUTS = (TimeoutError, BlockingIOError)


def _timed_out(exc: OSError) -> str:
    """The message of a timeout, the kernel's as Python's own (``timed out``)."""
    return "timed out" if isinstance(exc, BlockingIOError) else str(exc)


def _kernel_timeouts(sock: socket.socket, timeout: float) -> None:
    """Make ``sock`` blocking with the kernel's send and receive timeouts: Python's own
    timeout polls the socket before every ``send`` and ``recv`` (one more system call
    each, three per request), the kernel's costs nothing until it expires."""
    seconds, micro = divmod(max(1, round(timeout * 1e6)), 1_000_000)  # 0 would mean never
    value = struct.pack("ll", seconds, micro)
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


class FastTransport:
    """Keep-alive HTTP/1.1 connections to one origin (host and port; TLS with ``ssl_context``)."""

    def __init__(
        self,
        host: str,
        port: int,
        host_header: str,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._ssl = ssl_context  #: https: httpx's own, see ``BaseClient._init_transports``
        self._host_line = b"Host: " + host_header.encode("ascii") + b"\r\n"
        self._idle: deque[_Conn] = deque()
        self.closed = False
        _ALL.add(self)

    # -- connections ------------------------------------------------------------

    def _connect(self) -> _Conn:
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._host)
            elif self._timeout > 0:
                _kernel_timeouts(sock, self._timeout)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(str(exc)) from exc
        except OSError as exc:  # ssl.SSLError is an OSError
            sock.close()
            raise httpx.ConnectError(str(exc)) from exc
        return _Conn(sock)

    def _checkout(self) -> tuple[_Conn, bool]:
        """An idle live connection (``reused=True``) or a new one."""
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return self._connect(), False
            if not conn.stale():
                return conn, True
            conn.close()

    def _checkin(self, conn: _Conn) -> None:
        self._idle.append(conn)
        if self.closed:  # closed while this request was in flight
            self.close()

    def close(self) -> None:
        """Close the idle connections; later requests raise like a closed httpx client."""
        self.closed = True
        while True:
            try:
                self._idle.pop().close()
            except IndexError:
                return

    # -- requests ---------------------------------------------------------------

    def request(
        self, method: str, target: str, headers: bytes, body: bytes | None = None
    ) -> RawResponse:
        """Send ``method target`` with the encoded ``headers`` lines (each ending in CRLF)
        and ``body``; read the whole answer. Raises ``httpx.TransportError`` subclasses."""
        if self.closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        head = [method.encode("ascii"), b" ", target.encode("ascii"), b" HTTP/1.1\r\n"]
        head += [self._host_line, headers]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(b"Content-Length: %d\r\n" % len(body or b""))
        head.append(b"\r\n")
        if body:
            head.append(body)
        data = b"".join(head)
        conn, reused = self._checkout()
        try:
            resp, keep = self._exchange(conn, data, method)
        except _Dropped as dropped:
            conn.close()
            if not reused:
                raise dropped.error from None
            conn, reused = self._connect(), False
            try:
                resp, keep = self._exchange(conn, data, method)
            except _Dropped as again:
                conn.close()
                raise again.error from None
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        if keep:
            self._checkin(conn)
        else:
            conn.close()
        return resp

    def _exchange(self, conn: _Conn, data: bytes, method: str) -> tuple[RawResponse, bool]:
        sock = conn.sock
        try:
            sock.sendall(data)
        except _TIMEOUTS as exc:
            raise httpx.WriteTimeout(_timed_out(exc)) from exc
        except OSError as exc:
            raise _Dropped(httpx.WriteError(str(exc))) from exc
        while True:
            status, http10, headers, rest = self._read_head(conn)
            if 100 <= status < 200 and status != 101:
                conn.buf = rest
                continue
            break
        names = {name.lower(): value for name, value in headers}
        connection = names.get(b"connection", b"").lower()
        keep = b"close" not in connection and (not http10 or b"keep-alive" in connection)
        if method == "HEAD" or status in (204, 304):
            content, conn.buf = b"", rest
        elif b"chunked" in names.get(b"transfer-encoding", b"").lower():
            content, conn.buf = self._read_chunked(sock, rest)
        elif b"content-length" in names:
            try:
                length = int(names[b"content-length"])
            except ValueError:
                raise httpx.RemoteProtocolError("malformed Content-Length") from None
            content, conn.buf = self._read_exact(sock, rest, length)
        else:
            content, keep = self._read_to_eof(sock, rest), False
        encoding = names.get(b"content-encoding", b"identity").lower().strip()
        if encoding in (b"gzip", b"deflate"):
            try:
                content = zlib.decompress(content, 47 if encoding == b"gzip" else 15)
            except zlib.error as exc:
                raise httpx.DecodingError(f"cannot decode the answer: {exc}") from exc
        return RawResponse(status, headers, content), keep

    def _recv(self, sock: socket.socket, size: int = _RECV) -> bytes:
        try:
            return sock.recv(min(max(size, _RECV), _MAX_RECV))
        except _TIMEOUTS as exc:
            raise httpx.ReadTimeout(_timed_out(exc)) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc

    def _read_head(self, conn: _Conn) -> tuple[int, bool, list[tuple[bytes, bytes]], bytes]:
        buf = conn.buf
        conn.buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buf) > _MAX_HEAD:
                raise httpx.RemoteProtocolError("the answer's header is too long")
            try:
                chunk = conn.sock.recv(_RECV)
            except _TIMEOUTS as exc:
                raise httpx.ReadTimeout(_timed_out(exc)) from exc
            except OSError as exc:
                if buf:
                    raise httpx.ReadError(str(exc)) from exc
                raise _Dropped(httpx.ReadError(str(exc))) from exc
            if not chunk:
                error = httpx.RemoteProtocolError("Server disconnected without sending a response.")
                if buf:
                    raise error
                raise _Dropped(error)
            buf += chunk
        lines = buf[:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:100]!r}")
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise httpx.RemoteProtocolError(f"malformed header line {line[:100]!r}")
            headers.append((name.strip(), value.strip()))
        return int(parts[1]), parts[0] == b"HTTP/1.0", headers, buf[end + 4 :]

    def _read_exact(self, sock: socket.socket, rest: bytes, length: int) -> tuple[bytes, bytes]:
        if len(rest) >= length:
            return rest[:length], rest[length:]
        data = bytearray(rest)
        while len(data) < length:
            chunk = self._recv(sock, length - len(data))
            if not chunk:
                raise httpx.RemoteProtocolError(
                    f"peer closed connection without sending complete message body: "
                    f"received {len(data)} bytes, expected {length}"
                )
            data += chunk
        return bytes(data[:length]), bytes(data[length:])

    def _read_line(self, sock: socket.socket, buf: bytearray, start: int) -> int:
        """Receive until ``buf`` holds CRLF at or after ``start``; return its index."""
        while True:
            at = buf.find(b"\r\n", start)
            if at >= 0:
                return at
            chunk = self._recv(sock)
            if not chunk:
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body: "
                    "incomplete chunked read"
                )
            buf += chunk

    def _read_chunked(self, sock: socket.socket, rest: bytes) -> tuple[bytes, bytes]:
        buf = bytearray(rest)
        pos = 0
        body = bytearray()
        while True:
            eol = self._read_line(sock, buf, pos)
            size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"malformed chunk size {size_text!r}") from None
            pos = eol + 2
            if size == 0:
                while True:  # trailers, up to the empty line
                    eol = self._read_line(sock, buf, pos)
                    empty = eol == pos
                    pos = eol + 2
                    if empty:
                        return bytes(body), bytes(buf[pos:])
            while len(buf) < pos + size + 2:
                chunk = self._recv(sock, pos + size + 2 - len(buf))
                if not chunk:
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body: "
                        "incomplete chunked read"
                    )
                buf += chunk
            body += buf[pos : pos + size]
            pos += size + 2

    def _read_to_eof(self, sock: socket.socket, rest: bytes) -> bytes:
        data = bytearray(rest)
        while chunk := self._recv(sock):
            data += chunk
        return bytes(data)
