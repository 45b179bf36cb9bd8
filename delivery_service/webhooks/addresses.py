"""Where a webhook may go: http(s) URLs whose host resolves only to public addresses (SSRF protection).

`connect_address` resolves the host once and checks every address; the sender connects to the checked
address itself, so a DNS answer that changes in between cannot point a message at an internal service.
An IPv6 address that carries an IPv4 one is checked as both (`[::127.0.0.1]` is loopback). The rules:
docs/webhooks.md, "no SSRF".
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from delivery_service.settings import Settings

IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d, deprecated (RFC 4291)
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT's ::ffff:0:a.b.c.d, deprecated (RFC 2765)
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # reaches the IPv4 address it carries (RFC 6052)
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # a network's own translator (RFC 8215)


class WebhookUrlRefused(ValueError):
    """The URL may not receive webhooks; the message says why and what to do."""


@dataclass(frozen=True)
class AllowList:
    """Webhook targets the operator lets resolve to any address: WEBHOOK_URLS exactly, WEBHOOK_ALLOWED_HOSTS."""

    urls: frozenset[str] = frozenset()
    hosts: frozenset[tuple[str, int | None]] = frozenset()  # (host, port); port None: any port

    @classmethod
    def of(cls, settings: Settings) -> AllowList:
        return cls(frozenset(settings.webhook_url_list()), settings.webhook_allowed_host_entries())

    def allows(self, url: str, host: str, port: int) -> bool:
        return url in self.urls or not self.hosts.isdisjoint({(host, None), (host, port)})


def checked_url(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL with a host, or WebhookUrlRefused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlRefused(f"webhook_url must be an http or https URL with a host, not {url[:200]!r}.")
    if "@" in parts.netloc:  # even empty ones: http://:@host/
        raise WebhookUrlRefused("webhook_url must not carry credentials; authenticate the receiver with the signature.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookUrlRefused(f"webhook_url has an invalid port: {exc}.") from exc
    return parts.hostname.lower(), port


def refused_address(address: str) -> str | None:
    """Why an address may not be reached, or None for a public (globally routable) one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _refused_ip(ip)
    for carried in _carried_ipv4(ip):
        reason = _refused_ip(carried)
        if reason is not None:
            return f"{reason} ({carried}, carried in an IPv6 address)"
    if _ipv4_compatible(ip):
        return "an IPv4-compatible IPv6 address (::a.b.c.d, deprecated, routed nowhere)"
    if ip in IPV4_TRANSLATED:
        return "an IPv4-translated IPv6 address (::ffff:0:a.b.c.d, deprecated, routed nowhere)"
    if ip in NAT64_LOCAL_USE:
        return "an address of the local-use NAT64 prefix 64:ff9b:1::/48 (not public)"
    if ip.is_site_local:
        return "a site-local address (fec0::/10, deprecated, never public)"
    if ip.ipv4_mapped is not None or ip.sixtofour is not None or ip in NAT64_WELL_KNOWN:
        # Routed to the IPv4 address they carry, which decides. Python's own table is no guide here: since
        # the fix for CVE-2024-4032 (3.11.10, and Debian's 3.11.2 patched) it calls all of 2002::/16 private.
        return None
    return _refused_ip(ip)


def _ipv4_compatible(ip: ipaddress.IPv6Address) -> bool:
    return ip in IPV4_COMPATIBLE and int(ip) > 1  # but :: and ::1, the unspecified and loopback addresses


def _carried_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries: mapped, IPv4-compatible, translated, NAT64, 6to4, Teredo."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # the server's address and the client's
    if ip in IPV4_TRANSLATED or ip in NAT64_WELL_KNOWN or _ipv4_compatible(ip):
        return (ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF),)
    return ()


def _refused_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "an address that is not public"
    return None


async def connect_address(url: str, allowed: AllowList) -> tuple[str, str]:
    """The URL's host and the address to connect to, every resolved address checked unless the operator
    allows the URL (WebhookUrlRefused); OSError when the host does not resolve."""
    host, port = checked_url(url)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allowed.allows(url, host, port):
        for address in addresses:
            reason = refused_address(address)
            if reason is not None:
                raise WebhookUrlRefused(
                    f"The webhook host {host} resolves to {address}, {reason}; webhooks go to public addresses only. "
                    "An operator can allow this host with WEBHOOK_ALLOWED_HOSTS."
                )
    return host, addresses[0]
