"""Where a webhook may go: http(s) URLs whose host resolves only to public addresses (SSRF protection).

A `webhook_url` is checked when a task is made (422 if refused) and again at every attempt, when the
sender connects: `connect_address` resolves the host once, checks every address it got, and the sender
connects to the checked address itself (the hostname stays in the Host header and in TLS's SNI and
certificate check), so a DNS answer that changes between the check and the connection cannot point a
message at an internal service. Hosts listed in WEBHOOK_ALLOWED_HOSTS (and those of WEBHOOK_URLS) may
resolve to any address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class WebhookUrlRefused(ValueError):
    """The URL may not receive webhooks; the message says why and what to do."""


def checked_url(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL with a host, or WebhookUrlRefused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlRefused(f"webhook_url must be an http or https URL with a host, not {url[:200]!r}.")
    if parts.username or parts.password:
        raise WebhookUrlRefused("webhook_url must not carry credentials; authenticate the receiver with the signature.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookUrlRefused(f"webhook_url has an invalid port: {exc}.") from exc
    return parts.hostname.lower(), port


def refused_address(address: str) -> str | None:
    """Why an address may not be reached, or None for a public (globally routable) one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "an address that is not public"
    return None


async def connect_address(host: str, port: int, allowed_hosts: frozenset[str]) -> str:
    """The address to connect to for `host`, every resolved address checked; WebhookUrlRefused otherwise.

    Failing to resolve raises OSError (the sender retries it like a connection error).
    """
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if host not in allowed_hosts:
        for address in addresses:
            reason = refused_address(address)
            if reason is not None:
                raise WebhookUrlRefused(
                    f"The webhook host {host} resolves to {address}, {reason}; webhooks go to public addresses only. "
                    "An operator can allow this host with WEBHOOK_ALLOWED_HOSTS."
                )
    return addresses[0]
