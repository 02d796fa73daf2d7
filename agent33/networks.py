"""IP networks from settings (comma-separated CIDRs). Pure Python, so provider engines
running without Django use it too."""

from __future__ import annotations

import ipaddress

__all__ = ["Address", "Network", "parse_networks"]

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
