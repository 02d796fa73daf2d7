"""Who is calling, by network address: the client address throttles and the staff login
lock-out key on.

By default that is the address the connection came from (`REMOTE_ADDR`); headers such as
`X-Forwarded-For` are written by the client and never trusted, or a client could give every
request a fresh address, and with it a fresh counter. Behind reverse proxies, set
`AGENT33_TRUSTED_PROXIES` to their networks (comma-separated CIDRs): when the connection
comes from one of them, `X-Forwarded-For` is read from the right, past every address in
those networks, and the first address outside them is the client. An entry that is not an
address ends the walk at the last proxy that vouched for it.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core import checks

from agent33.networks import Address, Network, parse_networks

__all__ = ["check_trusted_proxies", "client_address"]


@lru_cache(maxsize=8)
def _trusted(text: str) -> tuple[Network, ...]:
    try:
        return parse_networks(text)
    except ValueError:
        return ()  # misconfigured: trust no header (the system check reports it)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _is_trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def client_address(request) -> str:
    """The caller's address, as a string (also django-axes' AXES_CLIENT_IP_CALLABLE)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    networks = _trusted(getattr(settings, "AGENT33_TRUSTED_PROXIES", ""))
    peer = _address(remote)
    if not networks or peer is None or not _is_trusted(peer, networks):
        return remote
    client = peer
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        hop_address = _address(hop)
        if hop_address is None:
            break
        client = hop_address
        if not _is_trusted(hop_address, networks):
            break
    return str(client)


@checks.register(checks.Tags.security)
def check_trusted_proxies(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    try:
        parse_networks(getattr(settings, "AGENT33_TRUSTED_PROXIES", ""))
    except ValueError as exc:
        return [checks.Error(f"AGENT33_TRUSTED_PROXIES: {exc}.",
                             hint="Comma-separated CIDRs of your reverse proxies, such as "
                             "10.0.0.0/8,127.0.0.1/32; empty: trust no forwarding header.",
                             id="agent33.E002")]
    return []
