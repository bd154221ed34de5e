"""``GET /v1/jobs?id_prefix=``: the lookup behind the CLI's short ids, on both databases
(a range of the primary key), through the SDK and a real HTTP server."""

from __future__ import annotations

import pytest

from jobyard.sdk.client import Client
from jobyard.sdk.errors import InvalidInput

LATER = "2099-01-01T00:00:00Z"  # scheduled far ahead: the jobs never run


def test_jobs_by_the_start_of_their_id(client: Client) -> None:
    batch = client.submit_batch([{"entrypoint": ["true"], "scheduled_at": LATER}] * 17)
    ids = [item.id for item in batch.items if item.id]
    assert len(ids) == 17
    for job_id in ids[:3]:
        for n in (1, 4, 8, 9, 10, 14, 35, 36):  # 9, 14: ending with '-'
            found = {j.id for j in client.list(id_prefix=job_id[:n], limit=500).items}
            assert found == {i for i in ids if i.startswith(job_id[:n])}, (job_id, n)
    page = client.list(id_prefix=ids[0][:1], limit=500)
    assert page.summary.total == sum(i.startswith(ids[0][0]) for i in ids)  # counted alike
    with pytest.raises(InvalidInput, match="id_prefix"):
        client.list(id_prefix="ZZ")


@pytest.mark.parametrize(
    ("prefix", "low", "high"),
    [
        ("5b9", "5b9", "5ba"),
        ("5b975f0b-", "5b975f0b", "5b975f0c"),  # bounds without '-' (locales ignore it)
        ("5bff", "5bff", "5c"),  # an 'f' carries
        ("ffff", "ffff", None),
    ],
)
def test_id_prefix_bounds(prefix: str, low: str, high: str | None) -> None:
    from jobyard.store.jobs import _id_prefix

    values = [c.right.value for c in _id_prefix(prefix)[1:]]
    assert values == [low] + ([high] if high else [])
