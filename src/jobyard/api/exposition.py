"""The Prometheus text format and OpenMetrics of ``/metrics``, written here.

jobyard's metrics are a few gauges and gauge histograms with plain names, read afresh on
each scrape, so the server does not import ``prometheus_client``: its package imports
an HTTP server, a WSGI server and ``urllib.request`` for its own push and serve helpers
(≈ 1.1 MB of an idle server's RSS, ``bench/README.md``). What this module writes is what
``prometheus_client`` 0.2x's ``choose_encoder`` and its two ``generate_latest`` write for
the same families and ``Accept`` header, byte for byte (``tests/unit/test_exposition.py``
compares them), for the names this module takes: legacy Prometheus names and label names
(``[a-zA-Z_][a-zA-Z0-9_]*``), no units, timestamps or exemplars.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

#: the content type of the text format, for the OpenAPI document (``prometheus_client``'s
#: ``CONTENT_TYPE_LATEST``)
CONTENT_TYPE_LATEST = "text/plain; version=1.0.0; charset=utf-8"
_TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
_OPENMETRICS_LATEST = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_ALLOWUTF8, _UNDERSCORES, _DOTS, _VALUES = "allow-utf-8", "underscores", "dots", "values"
_ESCAPINGS = (_ALLOWUTF8, _UNDERSCORES, _DOTS, _VALUES)
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Labels = dict[str, str]


@dataclass
class Family:
    """One metric family: its samples as (name, labels, value)."""

    name: str
    documentation: str
    type: str  #: ``gauge`` or ``gaugehistogram``
    labelnames: tuple[str, ...] = ()
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in (self.name, *self.labelnames):
            if not _NAME.fullmatch(name):
                raise ValueError(f"not a plain metric or label name: {name!r}")


def gauge(
    name: str, documentation: str, value: float | None = None, labels: Sequence[str] = ()
) -> Family:
    """A gauge: one ``value`` without labels, or :func:`add_gauge` a value per labels."""
    family = Family(name, documentation, "gauge", tuple(labels))
    if value is not None:
        add_gauge(family, [], value)
    return family


def add_gauge(family: Family, labels: Sequence[str], value: float) -> None:
    family.samples.append((family.name, dict(zip(family.labelnames, labels, strict=True)), value))


def gauge_histogram(
    name: str,
    documentation: str,
    buckets: Sequence[tuple[str, float]] | None = None,
    gsum_value: float | None = None,
    labels: Sequence[str] = (),
) -> Family:
    """A gauge histogram: one without labels (``buckets``, ``gsum_value``), or
    :func:`add_histogram` one per labels."""
    family = Family(name, documentation, "gaugehistogram", tuple(labels))
    if buckets is not None and gsum_value is not None:
        add_histogram(family, [], buckets, gsum_value)
    return family


def add_histogram(
    family: Family, labels: Sequence[str], buckets: Sequence[tuple[str, float]], gsum: float
) -> None:
    """The buckets (sorted, ``+Inf`` last, which is the count) and the sum of ``labels``."""
    named = list(zip(family.labelnames, labels, strict=True))
    for le, value in buckets:
        family.samples.append((family.name + "_bucket", dict([*named, ("le", le)]), value))
    family.samples.append((family.name + "_gcount", dict(named), buckets[-1][1]))
    family.samples.append((family.name + "_gsum", dict(named), gsum))


Encoder = Callable[[Iterable[Family]], bytes]


def choose_encoder(accept: str) -> tuple[Encoder, str]:
    """The encoder and content type for a scraper's ``Accept`` header."""
    for accepted in (accept or "").split(","):
        kind = accepted.split(";")[0].strip()
        if kind not in ("application/openmetrics-text", "text/plain"):
            continue
        tokens = accepted.split(";")
        version, escaping = _version(tokens), _escaping(tokens)
        if kind == "application/openmetrics-text":
            if not version:
                return _with(openmetrics, _UNDERSCORES), _OPENMETRICS_LATEST
            if _parse_version(version) >= (1, 0, 0):
                content_type = f"application/openmetrics-text; version={version}; charset=utf-8"
                return _with(openmetrics, escaping), f"{content_type}; escaping={escaping}"
        elif version and _parse_version(version) >= (1, 0, 0):
            return _with(text, escaping), f"{CONTENT_TYPE_LATEST}; escaping={escaping}"
    return _with(text, _UNDERSCORES), _TEXT_0_0_4


def _with(encode: Callable[[Iterable[Family], str], bytes], escaping: str) -> Encoder:
    return lambda families: encode(families, escaping)


def text(families: Iterable[Family], escaping: str = _UNDERSCORES) -> bytes:
    """The Prometheus text format (a gauge histogram as a ``histogram``, its ``_gcount``
    and ``_gsum`` as gauges after it)."""
    out: list[str] = []
    for f in families:
        kind = "histogram" if f.type == "gaugehistogram" else f.type
        doc = f.documentation.replace("\\", r"\\").replace("\n", r"\n")
        name = _metric_name(f.name, escaping)
        out += [f"# HELP {name} {doc}\n", f"# TYPE {name} {kind}\n"]
        extra: dict[str, list[str]] = {}
        for sample, labels, value in f.samples:
            line = f"{_metric_name(sample, escaping)}{_labels(labels, escaping)} {_go(value)}\n"
            for suffix in ("_created", "_gsum", "_gcount"):
                if sample == f.name + suffix:
                    extra.setdefault(suffix, []).append(line)
                    break
            else:
                out.append(line)
        for suffix, lines in sorted(extra.items()):
            name = _metric_name(f.name + suffix, escaping)
            out += [f"# HELP {name} {doc}\n", f"# TYPE {name} gauge\n", *lines]
    return "".join(out).encode()


def openmetrics(families: Iterable[Family], escaping: str = _UNDERSCORES) -> bytes:
    """OpenMetrics (ends with ``# EOF``)."""
    out: list[str] = []
    for f in families:
        name = _metric_name(f.name, escaping)
        out += [f"# HELP {name} {_value_text(f.documentation)}\n", f"# TYPE {name} {f.type}\n"]
        for sample, labels, value in f.samples:
            labelled = _sample_name(sample, escaping) + _labels(labels, escaping)
            out.append(f"{labelled} {_go(value)}\n")
    out.append("# EOF\n")
    return "".join(out).encode()


def _labels(labels: Labels, escaping: str) -> str:
    if not labels:
        return ""
    pairs = (f'{_label_name(k, escaping)}="{_value_text(v)}"' for k, v in sorted(labels.items()))
    return "{" + ",".join(pairs) + "}"


def _value_text(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _metric_name(name: str, escaping: str) -> str:
    """A plain name in ``escaping`` (``prometheus_client``'s ``escape_metric_name``)."""
    return name.replace("_", "__") if escaping == _DOTS else name


_label_name = _metric_name  # the same for plain label names


def _sample_name(name: str, escaping: str) -> str:
    """A plain name as OpenMetrics writes a sample's (its ``_escape``)."""
    if escaping == _DOTS:
        return name.replace("_", "__")
    if escaping == _VALUES:
        return "U__" + name.replace("_", "__")
    return name


def _go(value: float) -> str:
    """A value as Go writes it (``prometheus_client``'s ``floatToGoString``)."""
    d = float(value)
    if d == math.inf:
        return "+Inf"
    if d == -math.inf:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _version(tokens: Sequence[str]) -> str:
    for token in tokens:
        if "=" in token:
            key, value = token.strip().split("=", 1)
            if key == "version":
                return value
    return ""


def _escaping(tokens: Sequence[str]) -> str:
    for token in tokens:
        if "=" in token:
            key, value = token.strip().split("=", 1)
            if key == "escaping":
                return value if value in _ESCAPINGS else _UNDERSCORES
    return _UNDERSCORES


def _parse_version(version: str) -> tuple[int | str, ...]:
    return tuple(int(p) if _is_int(p) else p for p in version.split("."))


def _is_int(part: str) -> bool:
    try:
        int(part)
    except ValueError:
        return False
    return True
