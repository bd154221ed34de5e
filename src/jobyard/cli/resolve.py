"""Short ids: a unique prefix of an id stands for it, as in git and docker."""

from __future__ import annotations

import re
from collections.abc import Iterable

from jobyard.sdk.client import Client
from jobyard.sdk.errors import InvalidInput, NotFound

#: a whole id (a UUID) is used as it is, without a lookup
FULL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: what the start of an id can be (the server's ``id_prefix`` takes nothing else)
ID_START = re.compile(r"[0-9a-f-]{1,36}")
SHOWN = 5  #: ids listed when a prefix is ambiguous


def _one(what: str, given: str, ids: Iterable[str]) -> str:
    found = sorted(set(ids))
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFound(f"no {what} id starts with {given!r}", status_code=404, code="NOT_FOUND")
    listed = ", ".join(found[:SHOWN]) + (", …" if len(found) > SHOWN else "")
    raise InvalidInput(
        f"{given!r} is the start of more than one {what} id ({listed}): give more characters",
        status_code=422,
        code="AMBIGUOUS_ID",
    )


def job_id(client: Client, given: str) -> str:
    """The job id that ``given`` is, or is the unique start of."""
    given = given.strip()
    if FULL_ID.fullmatch(given) or not given:
        return given
    if not ID_START.fullmatch(given):  # no id starts so: not worth a request
        return _one("job", given, ())
    page = client.list(id_prefix=given, limit=SHOWN + 1)
    # (a server without id_prefix would list other jobs: only those that match count)
    return _one("job", given, (j.id for j in page.items if j.id.startswith(given)))


def definition_id(client: Client, given: str) -> str:
    """The definition id that ``given`` is, or is the unique start of."""
    given = given.strip()
    if FULL_ID.fullmatch(given) or not given:
        return given
    return _one("definition", given, (d.id for d in client.definitions() if d.id.startswith(given)))
