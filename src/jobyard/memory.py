"""Give freed memory back to the system after one-off work (start-up, the OpenAPI schema).

CPython's allocator and glibc's malloc keep what was freed for reuse; after a burst
that is not repeated, ``malloc_trim`` returns the free pages at the top of glibc's heaps
and arenas. Nothing happens where there is no glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import json
import os
import select
import signal
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from typing import Any


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def give_back() -> None:
    """Collect garbage, then return free heap memory to the system."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def built_apart(build: Callable[[], Any], timeout_s: float = 60.0, *, gzip: bool = False) -> bytes:
    """``build()``'s JSON-able result as JSON text (``gzip``: that text gzipped, by the
    child), computed in a forked child so that what building it leaves behind (caches,
    fragmented heap: ≈ 7.5 MB for the OpenAPI schema) stays in the child. The child
    only computes and writes; it touches no file, socket or lock of the parent's threads
    and leaves with ``os._exit``. Where there is no ``fork`` (or the child fails or takes
    longer than ``timeout_s``), ``build()`` runs here instead."""
    encode = _gzipped_json if gzip else _json
    if not hasattr(os, "fork") or sys.platform != "linux":
        return encode(build())
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns of fork() in a process with threads; the child runs only
        # pure Python on objects already built (the import lock is reset at fork).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_fd)
            data = encode(build())
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    complete = False
    deadline = time.monotonic() + timeout_s
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([pipe], [], [], left)[0]:
                break
            chunk = pipe.read(1 << 16)
            if not chunk:
                complete = True
                break
            chunks.append(chunk)
    if not complete:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return encode(build())
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return encode(build())
    return b"".join(chunks)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


#: zlib's ``wbits`` of the gzip format
GZIP_WBITS = 16 + zlib.MAX_WBITS


def _gzipped_json(value: Any) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, GZIP_WBITS)
    return packer.compress(_json(value)) + packer.flush()
