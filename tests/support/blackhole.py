"""A TCP proxy a test can turn into a black hole: a network partition between one client
(a node) and a server (its database) that other clients still reach directly.

::

    with TcpProxy("127.0.0.1", pg_port) as proxy:   # the client connects to proxy.port
        proxy.blackhole()   # bytes are swallowed, connections stay open: calls hang
        proxy.cut()         # every connection is closed; new ones are forwarded again

A black hole is the harder partition: the client's calls neither fail nor return, as
when a network drops packets without a reset.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._holed = False
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def blackhole(self) -> None:
        """Forward nothing any more, and close nothing: the client's calls hang."""
        with self._lock:
            self._holed = True

    def cut(self) -> None:
        """Close every proxied connection (hung calls fail) and forward new ones again."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self._holed = False
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    holed = self._holed
                if not holed:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
