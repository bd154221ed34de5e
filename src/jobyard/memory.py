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
from collections.abc import Callable


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
