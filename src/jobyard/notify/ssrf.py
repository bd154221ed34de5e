"""Server-side request forgery guard for webhook URLs.

A webhook URL is accepted only when its scheme is http or https, it names a host and
carries no credentials, and *every* address the host resolves to is public. Numeric
tricks (``2130706433``, ``0177.0.0.1``, ``0x7f000001``, ``127.1``) are normalised by
``getaddrinfo`` before the check, IPv4-mapped/NAT64/6to4 IPv6 addresses are judged by
the IPv4 address they carry. An operator's allow-list (CIDR ranges or host names) lets
chosen internal targets through. :func:`resolve_pinned` returns the validated address so
the request connects to exactly what was checked (no DNS rebinding in between).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from jobyard import errors

FIELD = "notifications.webhooks.url"
MAX_URL_LENGTH = 2048
SCHEMES = {"http": 80, "https": 443}
NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A checked URL: its parts and the addresses it may be reached at."""

    url: SplitResult
    host: str  #: as written in the URL (lower case, no brackets)
    port: int
    addresses: tuple[str, ...]


def _embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr.sixtofour


def is_public(addr: IPAddress) -> bool:
    """Whether ``addr`` is a globally routable unicast address (IPv6 forms that carry an
    IPv4 address are judged by that address)."""
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_v4(addr)
        if inner is not None:
            return is_public(inner)
        if addr.is_site_local:
            return False
    return addr.is_global and not (addr.is_multicast or addr.is_reserved)


def _allowed(addr: IPAddress, host: str, allow: Sequence[str]) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for entry in allow:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if entry == host:
                return True
            continue
        if addr.version == net.version and addr in net:
            return True
    return False


def _refuse(url: str, why: str, field: str) -> errors.InvalidInput:
    shown = url if len(url) <= 200 else url[:200] + "…"
    return errors.InvalidInput(f"{field}: {shown!r} is not allowed: {why}", field=field)


def _parse(url: str, field: str) -> tuple[SplitResult, str, int]:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise _refuse(str(url), f"a URL of at most {MAX_URL_LENGTH} characters is required", field)
    if any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
        raise _refuse(url, "it contains spaces, control characters or backslashes", field)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise _refuse(url, "only http and https URLs are accepted", field)
    if "@" in parts.netloc:
        raise _refuse(url, "credentials in the URL are not accepted (use the secret)", field)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _refuse(url, "the URL has no host", field)
    try:
        port = parts.port
    except ValueError:
        raise _refuse(url, "the port is not valid", field) from None
    if port is None:
        port = SCHEMES[scheme]
    if not 0 < port < 65536:
        raise _refuse(url, "the port is not valid", field)
    return parts, host, port


def resolve(url: str, allow: Sequence[str] = (), *, field: str = FIELD) -> Target:
    """Check ``url`` and resolve its host; raises InvalidInput(field=…) when refused."""
    parts, host, port = _parse(url, field)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _refuse(url, f"the host {host!r} cannot be resolved", field) from None
    addresses: list[str] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        addr = ipaddress.ip_address(text)
        if not is_public(addr) and not _allowed(addr, host, allow):
            raise _refuse(url, f"{host} resolves to the non-public address {addr}", field)
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise _refuse(url, f"the host {host!r} has no address", field)
    return Target(url=parts, host=host, port=port, addresses=tuple(addresses))


def check_url(url: str, allow: Sequence[str] = (), *, field: str = FIELD) -> None:
    """Raise :class:`errors.InvalidInput` unless ``url`` may receive webhooks."""
    resolve(url, allow, field=field)


def resolve_pinned(url: str, allow: Sequence[str] = (), *, field: str = FIELD) -> tuple[str, int]:
    """Check ``url`` and return the (ip, port) the request must connect to."""
    target = resolve(url, allow, field=field)
    return target.addresses[0], target.port
