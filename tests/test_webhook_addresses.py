"""Where a webhook may go, without a server: the address table (every IPv6 form that carries an IPv4
address is unwrapped and both are checked), the operator's allow-lists, and URLs with credentials.

The service-level refusals (422 on POST /api/run_task) are in tests/test_webhooks.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest
from pydantic import ValidationError

from delivery_service.service_errors import InvalidRequest
from delivery_service.service_layer.webhook_targets import webhook_targets
from delivery_service.settings import Settings
from delivery_service.webhooks.addresses import AllowList, WebhookUrlRefused, connect_address, refused_address
from webhook_receiver import new_secret

# (address, a word of the reason it is refused, or None for a public address)
ADDRESSES = [
    # IPv4
    ("93.184.216.34", None),
    ("127.0.0.1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "not public"),
    ("0.0.0.0", "private"),
    ("224.0.0.1", "not public"),
    ("192.0.2.1", "private"),
    # IPv6
    ("2606:4700::1111", None),
    ("::1", "loopback"),
    ("::", "private"),
    ("fd00::1", "private"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("ff02::1", "not public"),
    ("2001:db8::1", "private"),
    ("fec0::1", "site-local"),
    ("fec0::a9fe:a9fe", "site-local"),
    # IPv4-mapped ::ffff:a.b.c.d
    ("::ffff:93.184.216.34", None),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    # IPv4-compatible ::a.b.c.d (deprecated: refused even around a public address)
    ("::127.0.0.1", "loopback"),
    ("::a9fe:a9fe", "link-local"),
    ("::10.0.0.1", "private"),
    ("::5db8:d822", "IPv4-compatible"),
    # SIIT's IPv4-translated ::ffff:0:a.b.c.d (deprecated too)
    ("::ffff:0:a9fe:a9fe", "link-local"),
    ("::ffff:0:7f00:1", "loopback"),
    ("::ffff:0:5db8:d822", "IPv4-translated"),
    # NAT64: the well-known prefix 64:ff9b::/96 reaches the IPv4 address it carries; 64:ff9b:1::/48 is local
    ("64:ff9b::5db8:d822", None),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
    ("64:ff9b::a00:1", "private"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("64:ff9b:1:5db8:d822::", "local-use NAT64"),
    # 6to4 2002:a.b.c.d::/48
    ("2002:5db8:d822::1", None),
    ("2002:7f00:1::", "loopback"),
    ("2002:a9fe:a9fe::", "link-local"),
    ("2002:a00:1::1", "private"),
    # Teredo 2001:0::/32: the server's address, then the client's with its bits inverted
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
    ("2001:0:a9fe:a9fe:8000:63bf:a247:2dd9", "link-local"),
    ("2001:0:5db8:d822:8000:63bf:a247:2dd9", "private"),
]


@pytest.mark.parametrize(("address", "reason"), ADDRESSES)
def test_every_address_that_is_not_globally_routable_is_refused_after_unwrapping_ipv4(
    address: str, reason: str | None
) -> None:
    refused = refused_address(address)
    assert refused is None if reason is None else reason in (refused or ""), (address, refused)


def test_6to4_is_judged_by_the_ipv4_address_it_carries_whatever_pythons_table_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python's own table calls all of 2002::/16 private since the fix for CVE-2024-4032 (3.11.10, Debian's
    patched 3.11.2), and not before (3.11.7): the answer must not depend on which one runs."""
    sixtofour = ipaddress.ip_network("2002::/16")
    python_before = ipaddress.IPv6Address.is_private
    monkeypatch.setattr(
        ipaddress.IPv6Address, "is_private", property(lambda ip: ip in sixtofour or python_before.fget(ip))
    )
    assert ipaddress.ip_address("2002:5db8:d822::1").is_private, "the patched table"
    assert refused_address("2002:5db8:d822::1") is None
    assert "loopback" in (refused_address("2002:7f00:1::") or "")


def test_every_resolved_address_is_checked_and_the_checked_one_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"mixed.example": ["93.184.216.34", "10.0.0.7"], "public.example": ["93.184.216.34"]}

    async def getaddrinfo(self: object, host: str, port: int, **kwargs: object) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in answers[host]]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    nothing = AllowList()
    assert asyncio.run(connect_address("https://public.example/", nothing)) == ("public.example", "93.184.216.34")
    with pytest.raises(WebhookUrlRefused, match="10.0.0.7"):
        asyncio.run(connect_address("https://mixed.example/", nothing))
    allowed = AllowList(hosts=frozenset({("mixed.example", None)}))
    assert asyncio.run(connect_address("https://mixed.example/", allowed)) == ("mixed.example", "93.184.216.34")


def _settings(**values: str) -> Settings:
    return Settings(_env_file=None, webhook_secret=new_secret(), **values)  # type: ignore[call-arg, arg-type]


def _refusal(url: str, settings: Settings) -> str | None:
    """Why a task's webhook_url is refused (the 422's message), or None if the task may use it."""
    try:
        asyncio.run(webhook_targets(url, None, settings))
    except InvalidRequest as exc:
        return str(exc)
    return None


def test_an_operators_webhook_urls_allow_exactly_those_urls() -> None:
    settings = _settings(webhook_urls="http://127.0.0.1:8713/opsecret")
    assert _refusal("http://127.0.0.1:8713/opsecret", settings) is None
    for url in (
        "http://127.0.0.1:8713/other",
        "http://127.0.0.1:8000/api/run_task",
        "http://127.0.0.1:8713/opsecret/x",
    ):
        assert "loopback" in (_refusal(url, settings) or ""), url


def test_allowed_hosts_match_the_port_when_an_entry_names_one() -> None:
    settings = _settings(webhook_allowed_hosts="127.0.0.1:8713, LOCALHOST, [::1]:9000")
    for url in ("http://127.0.0.1:8713/any/path", "http://localhost:1234/hook", "http://[::1]:9000/hook"):
        assert _refusal(url, settings) is None, url
    for url in ("http://127.0.0.1:8000/api/run_task", "http://127.0.0.1/hook", "http://[::1]:9001/hook"):
        assert "loopback" in (_refusal(url, settings) or ""), url
    assert _settings(webhook_allowed_hosts="hooks.example:443").webhook_allowed_hosts == "hooks.example:443"


@pytest.mark.parametrize(
    "entry",
    [
        "http://hooks.example",
        "hooks.example/path",
        "hooks.example:",
        "hooks.example:0",
        "hooks.example:99999",
        "user@hooks.example",
        "*.example.com",
        "::1",
        "[::1",
        "hooks example",
        "hooks.example:80:80",
    ],
)
def test_an_allowed_hosts_entry_that_cannot_be_read_stops_the_start_naming_it(entry: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(webhook_allowed_hosts=f"ok.example, {entry}")
    assert f"WEBHOOK_ALLOWED_HOSTS: cannot read {entry!r}" in str(refused.value)


def test_empty_credentials_are_refused_like_any_others() -> None:
    settings = _settings(webhook_allowed_hosts="127.0.0.1")
    for url in ("http://:@127.0.0.1/hook", "http://@127.0.0.1/hook", "http://user@127.0.0.1/hook"):
        assert "credentials" in (_refusal(url, settings) or ""), url
    with pytest.raises(ValidationError, match="carries credentials"):
        _settings(webhook_urls="http://:@127.0.0.1/hook")
