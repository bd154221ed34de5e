"""The SSRF guard of webhook URLs: only literals and /etc/hosts names are resolved here
(no connection is made, no public DNS is asked)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from jobyard import errors
from jobyard.notify import ssrf

REFUSED = [
    # loopback, spelled every way getaddrinfo understands
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/hook",
    "http://127.1/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://localhost/",
    "http://LOCALHOST./x",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    # unspecified
    "http://0/",
    "http://0.0.0.0/",
    "http://[::]/",
    # private, CGNAT, link-local (cloud metadata), unique local
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://[::ffff:192.168.1.1]/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.0.1/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fec0::1]/",
    # multicast, broadcast, reserved, documentation, benchmarking
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    "http://[2001:db8::1]/",
    # IPv6 forms that carry a private IPv4 address (NAT64, 6to4)
    "http://[64:ff9b::a00:1]/",
    "http://[2002:7f00:1::]/",
    # credentials, schemes, malformed
    "http://a@127.0.0.1/",
    "http://user:pw@93.184.216.34/",
    "http://127.0.0.1\\@93.184.216.34/",
    "ftp://x/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/",
    "javascript:alert(1)",
    "http://",
    "https://",
    "//93.184.216.34/",
    "",
    "http://exa mple/",
    "http://93.184.216.34:0/",
    "http://93.184.216.34:99999/",
    "http://93.184.216.34:x/",
]

ALLOWED = [
    "http://93.184.216.34/hook",
    "https://93.184.216.34/",
    "HTTPS://93.184.216.34:8443/a/b?c=d#e",
    "http://8.8.8.8:8080/x?y=1",
    "http://1.1.1.1/",
    "http://[2606:2800:220:1:248:1893:25c8:1946]/",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::808:808]/",
]


def test_tables_are_big_enough() -> None:
    assert len(REFUSED) >= 30 and len(ALLOWED) >= 5


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url: str) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        ssrf.check_url(url, [])
    assert info.value.details["field"] == "notifications.webhooks.url"


@pytest.mark.parametrize("url", ALLOWED)
def test_allowed(url: str) -> None:
    ssrf.check_url(url, [])


def test_the_field_can_be_named() -> None:
    with pytest.raises(errors.InvalidInput) as info:
        ssrf.check_url("http://10.0.0.1/", [], field="notifications.webhooks[3].url")
    assert info.value.details["field"] == "notifications.webhooks[3].url"
    assert "10.0.0.1" in info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://2130706433/",
        "http://[::ffff:127.0.0.1]:9000/",
        "http://localhost:9000/",
    ],
)
def test_allow_list_lets_loopback_through(url: str) -> None:
    allow = ["127.0.0.0/8", "::1/128"]
    ssrf.check_url(url, allow)
    with pytest.raises(errors.InvalidInput):
        ssrf.check_url("http://10.0.0.1/", allow)
    with pytest.raises(errors.InvalidInput):
        ssrf.check_url("http://a@127.0.0.1/", allow)  # credentials stay refused


def test_allow_list_by_host_name() -> None:
    ssrf.check_url("http://localhost:9000/", ["localhost"])
    with pytest.raises(errors.InvalidInput):
        ssrf.check_url("http://127.0.0.1:9000/", ["localhost"])


def test_resolve_pinned_returns_the_checked_address() -> None:
    assert ssrf.resolve_pinned("http://93.184.216.34/hook", []) == ("93.184.216.34", 80)
    assert ssrf.resolve_pinned("https://93.184.216.34/", []) == ("93.184.216.34", 443)
    assert ssrf.resolve_pinned("http://[2606:4700::1111]:8443/", []) == ("2606:4700::1111", 8443)
    assert ssrf.resolve_pinned("http://127.0.0.1:9/", ["127.0.0.0/8"]) == ("127.0.0.1", 9)


def _fake_dns(monkeypatch: pytest.MonkeyPatch, addresses: list[str]) -> None:
    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == "hooks.example"
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, ["93.184.216.34", "10.1.2.3"])
    with pytest.raises(errors.InvalidInput, match=r"10\.1\.2\.3"):
        ssrf.check_url("https://hooks.example/x", [])


def test_a_name_pins_its_first_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    assert ssrf.resolve_pinned("https://hooks.example/x", []) == ("93.184.216.34", 443)


def test_an_unresolvable_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(*_args: Any, **_kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(errors.InvalidInput, match="cannot be resolved"):
        ssrf.check_url("https://nowhere.example/", [])
