"""One HTTP POST to a receiver, under the outbound rules (agent33/networks.py).

The URL's host is resolved once, every address is checked, and the connection goes to the
checked address itself (the URL's host replaced by the IP, `Host` and TLS SNI keeping the
name; certificates are verified against the name), so a DNS answer that changes between the
check and the connect (rebinding) cannot aim the request at a private address. No redirect
is followed, no proxy from the environment is used, and the whole try is bounded by the
timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from agent33.networks import Address, address_refusal, outbound_allowed_networks, resolve

__all__ = ["TIMEOUT_SECONDS", "Answer", "post"]

TIMEOUT_SECONDS = 10.0
MAX_READ_BYTES = 4096  # a receiver's body is not used: read a little, never a flood
USER_AGENT = "AGENT33-Webhooks/1"


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no HTTP answer (refused, unresolvable, timeout, ...)
    duration_ms: int
    error: str = ""
    retry_after: float | None = None


class _Refused(Exception):
    pass


def _target(url: str) -> tuple[str, str, Address]:
    """(URL aimed at the checked address, Host header, address); _Refused otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    addresses = resolve(host)
    if not addresses:
        raise _Refused(f"url host {host} does not resolve")
    allowed = outbound_allowed_networks()
    for address in addresses:  # any off-limits address refuses the host, as at creation
        refused = address_refusal(host, address, allowed)
        if refused is not None:
            raise _Refused(f"url_not_allowed: {refused}")
    address = next((a for a in addresses if a.version == 4), addresses[0])
    literal = str(address) if address.version == 4 else f"[{address}]"
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    name = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    host_header = name if parts.port is None else f"{name}:{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return pinned, host_header, address


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        pinned, host_header, _address = _target(url)
    except _Refused as exc:
        return Answer(None, elapsed(), str(exc)[:500])
    hostname = urlsplit(url).hostname or ""
    extensions = {"sni_hostname": hostname} if url.lower().startswith("https") else {}
    request_headers = {"content-type": "application/json", "user-agent": USER_AGENT,
                       "host": host_header, **headers}
    try:
        with httpx.Client(timeout=httpx.Timeout(TIMEOUT_SECONDS), follow_redirects=False,
                          trust_env=False) as client:
            request = client.build_request("POST", pinned, content=body,
                                           headers=request_headers, extensions=extensions)
            response = client.send(request, stream=True)
            try:
                deadline = started + TIMEOUT_SECONDS
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= MAX_READ_BYTES or time.monotonic() > deadline:
                        break
            finally:
                response.close()
    except httpx.TimeoutException:
        return Answer(None, elapsed(), f"timed out after {TIMEOUT_SECONDS:g} s")
    except httpx.HTTPError as exc:
        return Answer(None, elapsed(), f"{type(exc).__name__}: {exc}"[:500])
    status = response.status_code
    error = ""
    if 300 <= status < 400:
        location = response.headers.get("location", "")[:200]
        error = f"redirect not followed (to {location})" if location else "redirect not followed"
    elif not 200 <= status < 300:
        error = f"HTTP {status}"
    return Answer(status, elapsed(), error,
                  _retry_after(response.headers.get("retry-after")))
