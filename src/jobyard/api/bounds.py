"""Bounded integers for query parameters and body fields: an integer a client sends is
checked against the range the database stores (PostgreSQL ``INTEGER`` and ``BIGINT``;
SQLite holds 64 bits), so an out-of-range value is a 422 ``VALIDATION_ERROR`` naming its
field, never a driver's error (SQLite's ``OverflowError``, PostgreSQL's out-of-range)
answered 500. Use these types (or their constants in ``Query``/``Field``) for every
integer a request carries."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_INT32 = 2**31 - 1  #: an ``INTEGER`` column (32 bits on PostgreSQL)
MAX_INT64 = 2**63 - 1  #: a ``BIGINT`` column, a file offset

#: a value stored in an ``INTEGER`` column
Int32 = Annotated[int, Field(ge=-(2**31), le=MAX_INT32)]
#: a count stored in an ``INTEGER`` column (quotas, limits)
Count32 = Annotated[int, Field(ge=0, le=MAX_INT32)]
#: a count stored in a ``BIGINT`` column (bytes)
Count64 = Annotated[int, Field(ge=0, le=MAX_INT64)]
#: a cursor over ``seq`` columns (``INTEGER``): events after this one
Seq = Annotated[int, Field(ge=0, le=MAX_INT32)]
#: an attempt number (``INTEGER``)
AttemptNo = Annotated[int, Field(ge=1, le=MAX_INT32)]
#: a byte offset into a log file
ByteOffset = Annotated[int, Field(ge=0, le=MAX_INT64)]
