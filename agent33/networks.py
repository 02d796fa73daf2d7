"""IP networks from settings (comma-separated CIDRs) and the outbound rules every server-made
HTTP call follows (provider calls, webhook deliveries). Pure Python, so provider engines
running without Django use it too."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = [
    "LEGACY_OUTBOUND_SETTING",
    "OUTBOUND_SETTING",
    "Address",
    "Network",
    "address_kind",
    "address_refusal",
    "outbound_allowed_networks",
    "outbound_refusal",
    "parse_networks",
    "resolve",
]

type Network = ipaddress.IPv4Network | ipaddress.IPv6Network
type Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs ("10.0.0.0/8, fd00::/8"); ValueError naming a bad entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not a network in CIDR notation") from None
    return tuple(networks)


# --- Where the server may send outbound HTTP (DESIGN §7.2, §8.5) --------------------------
# Provider base_urls and webhook URLs are chosen by people who are not the operator, and what
# answers them is shown back (a provider's error text, a delivery's status). So the server
# never calls this machine or a private, link-local, multicast, unspecified or reserved
# address, unless the operator allows that network in AGENT33_OUTBOUND_PRIVATE_NETWORKS (the
# older name AGENT33_PROVIDER_PRIVATE_NETWORKS is still read: both settings' networks are
# allowed). Pure Python below `outbound_allowed_networks`: engines use it without Django.

OUTBOUND_SETTING = "AGENT33_OUTBOUND_PRIVATE_NETWORKS"
LEGACY_OUTBOUND_SETTING = "AGENT33_PROVIDER_PRIVATE_NETWORKS"


def address_kind(address: Address) -> str | None:
    """What makes an address off limits, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return kind
    return None


def resolve(host: str) -> list[Address]:
    """Every address `host` names (itself for an IP literal), sorted; empty when it does not
    resolve now (the call itself then fails as a connection error)."""
    import socket

    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    # An IPv6 scope ("fe80::1%eth0") is not part of the address.
    return sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str)


def address_refusal(host: str, address: Address, allowed: Iterable[Network],
                    *, field: str = "url") -> str | None:
    """Why `address` (which `host` resolved to) must not be called, or None."""
    kind = address_kind(address)
    if kind is None or any(address in network for network in allowed):
        return None
    shown = host if host == str(address) else f"{host} ({address})"
    return (f"{field} host {shown} is a {kind} address; the server calls only public "
            f"addresses unless {OUTBOUND_SETTING} (formerly {LEGACY_OUTBOUND_SETTING}) "
            "allows the network")


def outbound_refusal(url: str, allowed: Iterable[Network] = (), *, field: str = "url"
                     ) -> str | None:
    """Why the server must not call `url`, or None. A host is refused when ANY address it
    resolves to is off limits and outside every `allowed` network."""
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        return None  # the URL's own validation says what is wrong with it
    allowed = tuple(allowed)
    for address in resolve(host):
        refused = address_refusal(host, address, allowed, field=field)
        if refused is not None:
            return refused
    return None


def outbound_allowed_networks() -> tuple[Network, ...]:
    """The operator's allowed private networks, from both setting names (a start-up check
    refuses a malformed one; here a malformed one allows nothing private)."""
    from django.conf import settings

    networks: list[Network] = []
    for name in (OUTBOUND_SETTING, LEGACY_OUTBOUND_SETTING):
        try:
            networks += parse_networks(getattr(settings, name, "") or "")
        except ValueError:
            continue
    return tuple(networks)
