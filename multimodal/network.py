"""Where the server may send provider calls (DESIGN §7.2).

A provider's `base_url` is chosen by an operator or staff member, and whatever answers it is
shown to tenants as the provider's error text. So the server never calls this machine or a
private, link-local, multicast, unspecified or reserved address, unless the operator allows
that network in `AGENT33_OUTBOUND_PRIVATE_NETWORKS` (formerly
`AGENT33_PROVIDER_PRIVATE_NETWORKS`, still read). Checked when a base_url is set and again
before every call, so a name that resolves elsewhere later (DNS rebinding) is caught at call
time too. The rules themselves are the core's (agent33/networks.py), shared with webhook
deliveries; this module names the field. Pure Python: the engines use it without Django.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent33.networks import Network, outbound_allowed_networks, outbound_refusal, parse_networks

__all__ = ["Network", "allowed_networks", "parse_networks", "refusal"]


def refusal(url: str, allowed: Iterable[Network] = ()) -> str | None:
    """Why the server must not call `url` as a provider base_url, or None."""
    return outbound_refusal(url, allowed, field="base_url")


def allowed_networks() -> tuple[Network, ...]:
    """The operator's allowed private networks (both setting names)."""
    return outbound_allowed_networks()
