"""One access-log line per HTTP request (``jobyard.access``): method, path, status and
time taken. A plain ASGI middleware: next to nothing per request beyond the line itself."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("jobyard.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ms = round((time.perf_counter() - started) * 1000, 2)
            client = scope.get("client")
            method, path = scope["method"], scope["path"]
            log.info(
                "%s %s %d %.1fms",
                method,
                path,
                status or 500,
                ms,
                extra={
                    "method": method,
                    "path": path,
                    "status": status or 500,
                    "duration_ms": ms,
                    "client": client[0] if client else None,
                },
            )
