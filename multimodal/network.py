"""Where the server may send provider calls (DESIGN §7.2).

A provider's `base_url` is chosen by an operator or staff member, and whatever answers it is
shown to tenants as the provider's error text. So the server never calls this machine or a
private, link-local, multicast, unspecified or reserved address, unless the operator allows
that network in `AGENT33_PROVIDER_PRIVATE_NETWORKS` (a self-hosted OpenAI-compatible server on
the LAN, say). Checked when a base_url is set and again before every call, so a name that
resolves elsewhere later (DNS rebinding) is caught at call time too. Pure Python: the engines
use it without Django.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from agent33.networks import Address, Network, parse_networks

__all__ = ["Network", "allowed_networks", "parse_networks", "refusal"]


def _kind(address: Address) -> str | None:
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


def _addresses(host: str) -> set[Address]:
    try:
        return {ipaddress.ip_address(host)}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()  # unresolvable now: the call itself fails as a connection error
    # An IPv6 scope ("fe80::1%eth0") is not part of the address.
    return {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}


def refusal(url: str, allowed: Iterable[Network] = ()) -> str | None:
    """Why the server must not call `url`, or None. A host is refused when ANY address it
    resolves to is off limits and outside every `allowed` network."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        return None  # the URL's own validation says what is wrong with it
    allowed = tuple(allowed)
    for address in sorted(_addresses(host), key=str):
        kind = _kind(address)
        if kind is not None and not any(address in network for network in allowed):
            shown = host if host == str(address) else f"{host} ({address})"
            return (f"base_url host {shown} is a {kind} address; the server calls only public "
                    "addresses unless AGENT33_PROVIDER_PRIVATE_NETWORKS allows the network")
    return None


def allowed_networks() -> tuple[Network, ...]:
    """The operator's AGENT33_PROVIDER_PRIVATE_NETWORKS (a start-up check refuses a bad one)."""
    from django.conf import settings

    try:
        return parse_networks(getattr(settings, "AGENT33_PROVIDER_PRIVATE_NETWORKS", ""))
    except ValueError:
        return ()  # misconfigured: allow nothing private (the system check reports it)
