"""``api/exposition.py`` writes what ``prometheus_client`` writes: for any ``Accept``
header and any gauges and gauge histograms of plain names, the same content type and
the same bytes as its ``choose_encoder`` and ``generate_latest`` (text and OpenMetrics).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeHistogramMetricFamily, GaugeMetricFamily

from jobyard.api import exposition

KINDS = ["text/plain", "application/openmetrics-text", "*/*", "text/html", " text/plain "]
VERSIONS = [None, "0.0.4", "1.0.0", "2.0.0", "0.0.1", "1.0", "3", "", "1.0.0-rc1"]
ESCAPINGS = [None, "underscores", "dots", "values", "allow-utf-8", "nonsense", ""]
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True)
texts = st.text(st.sampled_from([*'ab"\\\n→ =,{}', "é"]), max_size=8)
values = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 3600.0, 1234567.0, 1e-7, 12345678.9, float("inf")]),
)


@st.composite
def accept_headers(draw: Any) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(KINDS))
        version, escaping = draw(st.sampled_from(VERSIONS)), draw(st.sampled_from(ESCAPINGS))
        tokens = [kind]
        if version is not None:
            tokens.append(f" version={version}")
        if escaping is not None:
            tokens.append(f"escaping={escaping}")
        if draw(st.booleans()):
            tokens.append("q=0.5")
        parts.append(";".join(draw(st.permutations(tokens)) if draw(st.booleans()) else tokens))
    return ",".join(parts)


@st.composite
def families(draw: Any) -> tuple[list[exposition.Family], CollectorRegistry]:
    ours: list[exposition.Family] = []
    theirs: list[Any] = []
    used: set[str] = set()
    for _ in range(draw(st.integers(1, 4))):
        name = draw(names.filter(lambda n: n not in used))
        used.update(n for n in (name, name + "_bucket", name + "_gcount", name + "_gsum"))
        doc = draw(texts)
        label = draw(st.sampled_from(["status", "priority", "a_b"]))
        if draw(st.booleans()):
            if draw(st.booleans()):
                value = draw(values)
                ours.append(exposition.gauge(name, doc, value))
                theirs.append(GaugeMetricFamily(name, doc, value))
                continue
            mine, their = (
                exposition.gauge(name, doc, labels=[label]),
                GaugeMetricFamily(name, doc, labels=[label]),
            )
            for text, value in draw(st.lists(st.tuples(texts, values), max_size=3)):
                exposition.add_gauge(mine, [text], value)
                their.add_metric([text], value)
        else:
            bounds = draw(st.lists(values, max_size=3))
            buckets = [*((str(float(b)), draw(values)) for b in bounds), ("+Inf", draw(values))]
            total = draw(values)
            if draw(st.booleans()):
                ours.append(exposition.gauge_histogram(name, doc, buckets, total))
                theirs.append(GaugeHistogramMetricFamily(name, doc, buckets, total))
                continue
            mine = exposition.gauge_histogram(name, doc, labels=[label])
            histograms = GaugeHistogramMetricFamily(name, doc, labels=[label])
            for text in draw(st.lists(texts, max_size=2)):
                exposition.add_histogram(mine, [text], buckets, total)
                histograms.add_metric([text], buckets, total)
            ours.append(mine)
            theirs.append(histograms)

    class Collector:
        def collect(self) -> list[Any]:
            return theirs

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return ours, registry


def answer(encoder: Any, content_type: str, collected: Any) -> tuple[str, bytes | str]:
    try:
        return content_type, encoder(collected)
    except Exception as e:  # the same failure on both sides counts as the same answer
        return content_type, type(e).__name__


@settings(max_examples=600, deadline=None)
@given(accept=accept_headers(), made=families())
def test_the_same_bytes_as_prometheus_client(
    accept: str, made: tuple[list[exposition.Family], CollectorRegistry]
) -> None:
    ours, registry = made
    try:
        their_encoder, their_type = choose_encoder(accept)
    except TypeError:  # a version that does not compare (prometheus_client's own error)
        with pytest.raises(TypeError):
            exposition.choose_encoder(accept)
        return
    our_encoder, our_type = exposition.choose_encoder(accept)
    assert answer(our_encoder, our_type, ours) == answer(their_encoder, their_type, registry)


def test_the_documented_content_type_and_plain_names_only() -> None:
    assert exposition.CONTENT_TYPE_LATEST == CONTENT_TYPE_LATEST
    with pytest.raises(ValueError):
        exposition.gauge("jobyard:jobs", "a name prometheus_client would quote or escape")
    with pytest.raises(ValueError):
        exposition.gauge("jobs", "a label name that is not plain", labels=["the status"])


def test_the_common_answers_are_the_text_and_openmetrics_formats() -> None:
    family = exposition.gauge("jobyard_jobs", "Jobs", labels=["status"])
    exposition.add_gauge(family, ["queued"], 3)
    encode, content_type = exposition.choose_encoder("*/*")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert encode([family]) == (
        b'# HELP jobyard_jobs Jobs\n# TYPE jobyard_jobs gauge\njobyard_jobs{status="queued"} 3.0\n'
    )
    encode, content_type = exposition.choose_encoder("application/openmetrics-text")
    assert content_type == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert encode([family]).endswith(b'jobyard_jobs{status="queued"} 3.0\n# EOF\n')
