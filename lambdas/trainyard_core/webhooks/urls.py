"""Which webhook URLs Trainyard may call: no SSRF into the VPC, the host or metadata.

A URL is accepted only if it is ``https`` on the default port, carries no
credentials, and its host resolves to public (globally routable unicast) addresses
only: every address the name resolves to is checked, so a name with one private
address among public ones is refused. It is checked when it is set and again before
every delivery, which then connects to exactly the addresses checked (a name that
re-resolves to a private address in between, DNS rebinding, is not followed).

Refused: private (RFC 1918, ULA), loopback, link-local (169.254.0.0/16, where the
EC2/ECS metadata endpoints live, and fe80::/10), shared (100.64.0.0/10), multicast,
reserved, unspecified and documentation ranges, and the IPv6 forms that embed an
IPv4 address (IPv4-mapped, NAT64, 6to4) unless the embedded address is public.
Non-default ports are refused too: receivers serve HTTPS on 443, and an open port
choice would turn deliveries into a port scanner of other people's hosts.

The embedded stack only (``allow_loopback_http``, never on in AWS) also accepts
``http://127.0.0.1:<port>`` so tests can receive deliveries.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from trainyard_core import limits
from trainyard_core.errors import InvalidRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Resolver(Protocol):
    def __call__(self, host: str, timeout: float | None = None) -> list[str]:
        """Every address ``host`` resolves to, within ``timeout`` seconds (None: the
        resolver's own bound); OSError when it does not resolve (or not in time)."""
        ...


LOOPBACK_HOST = "127.0.0.1"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_6TO4 = ipaddress.ip_network("2002::/16")


class WebhookUrlRefused(InvalidRequest):
    code = "InvalidWebhookUrl"


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``addresses``) and what to ask for."""

    scheme: str
    host: str  # the name (Host header, TLS server name and certificate check)
    port: int
    path: str  # path and query, as sent
    addresses: tuple[str, ...]


def _refuse(code: str, message: str) -> WebhookUrlRefused:
    return WebhookUrlRefused(message, code=code)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _6TO4:
        return address.sixtofour
    return None


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if address.teredo is not None:
            return False
    return bool(
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_link_local
        and not address.is_loopback
        and not address.is_private
        and not address.is_unspecified
    )


def _describe(address: Address) -> str:
    if str(address) in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2"):
        return f"{address} is a cloud metadata endpoint"
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}", False):
            return f"{address} is a {kind.replace('_', '-')} address"
    return f"{address} is not a public address"


def check_url(
    url: str,
    resolve: Resolver,
    *,
    allow_loopback_http: bool = False,
    timeout: float | None = None,
) -> Target:
    """The target of ``url``, or ``WebhookUrlRefused`` (a 400 with its code);
    ``timeout`` bounds resolving its host."""
    if not isinstance(url, str) or not url or len(url) > limits.WEBHOOK_URL_MAX_CHARS:
        raise _refuse(
            "InvalidWebhookUrl", f"url must be 1-{limits.WEBHOOK_URL_MAX_CHARS} characters"
        )
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise _refuse("InvalidWebhookUrl", "url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse("InvalidWebhookUrl", f"url is not a valid URL: {exc}") from exc
    host = parts.hostname or ""
    scheme = parts.scheme.lower()
    # The embedded stack's receivers (tests); never allowed in AWS.
    loopback = allow_loopback_http and scheme == "http" and host == LOOPBACK_HOST and bool(port)
    if scheme != "https" and not loopback:
        raise _refuse("WebhookUrlNotHttps", "url must be https://")
    if not host:
        raise _refuse("InvalidWebhookUrl", "url has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refuse(
            "WebhookUrlHasCredentials", "url must not carry credentials (user@ or :password)"
        )
    if parts.fragment:
        raise _refuse("InvalidWebhookUrl", "url must not have a fragment (#...)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if loopback and port:
        return Target("http", host, port, path, (LOOPBACK_HOST,))
    if port not in (None, 443):
        raise _refuse("WebhookUrlPortNotAllowed", "url must use the default https port (443)")
    return Target("https", host, 443, path, public_addresses(host, resolve, timeout))


def public_addresses(host: str, resolve: Resolver, timeout: float | None = None) -> tuple[str, ...]:
    """Every address ``host`` resolves to, all of them public, or a refusal."""
    literal = host.strip("[]")
    try:
        addresses = [ipaddress.ip_address(literal)]
    except ValueError:
        try:
            resolved = resolve(host, timeout=timeout)
        except (OSError, UnicodeError) as exc:
            raise _refuse("WebhookHostUnresolvable", f"{host} does not resolve: {exc}") from exc
        if not resolved:
            raise _refuse("WebhookHostUnresolvable", f"{host} resolves to no address") from None
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
    for address in addresses:
        if not is_public(address):
            raise _refuse(
                "WebhookAddressNotPublic",
                f"url must reach a public address: {host} -> {_describe(address)}",
            )
    return tuple(dict.fromkeys(str(a) for a in addresses))
