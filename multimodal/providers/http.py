"""The one HTTP helper the cloud engines share: deadline-bound requests with retries.

Every engine (OpenAI, OpenAI-compatible, ElevenLabs) sends its requests through
`RetryingClient`, so the retry policy, the deadline arithmetic, the error-text parsing and
the credential scrubbing live here once. Engines only build requests and interpret
successful responses.

Policy, in short:
- each attempt gets an httpx timeout equal to the time left before `call.deadline`, and the
  body is read in chunks with the deadline checked between them;
- 408, 429, any 5xx and transport errors (refused, reset, timeouts) are retried with
  exponential backoff plus jitter, or after the server's `Retry-After` when it sends one;
- a wait that would end past the deadline is not started: the call fails at once instead;
- any other non-2xx status fails at once;
- every message that leaves this module has the API key scrubbed from it;
- attempts the provider may have billed without a usable answer (a 5xx or 408, a timeout or
  a connection dropped after the request was sent; not a 429, another 4xx or a refused
  connection) are counted (`unanswered_attempts`), so spend counts them, and such an
  attempt is repeated only if `call.before_paid_retry` allows it (a spend limit reserves
  the retry first).
"""

from __future__ import annotations

import json
import random
import re
import struct
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ..network import refusal
from .base import ProviderCall, ProviderError
from .metrics import provider_call_seconds, provider_retries

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_MAX_SECONDS",
    "MAX_ATTEMPTS",
    "RETRYABLE_STATUSES",
    "HttpResult",
    "RetryingClient",
    "error_text",
    "parse_retry_after",
    "scrub",
    "wav_duration_seconds",
]

# Module constants rather than arguments so operators (and tests) can tune them in one place.
MAX_ATTEMPTS = 5  # HTTP attempts per call, the first one included
BACKOFF_BASE_SECONDS = 0.5  # nominal wait before attempt 2; doubles for each later attempt
BACKOFF_MAX_SECONDS = 8.0  # cap on the nominal wait, before jitter
RETRYABLE_STATUSES = frozenset({408, 429})  # plus every 5xx, see _is_retryable_status

# Provider error bodies can be whole HTML pages (proxies, gateways); keep messages readable.
_MAX_ERROR_TEXT = 300
_REDACTED = "[redacted]"


@dataclass
class HttpResult:
    """A successful (2xx) response, fully read."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    attempts: int
    unanswered_attempts: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def scrub(text: str, secret: str) -> str:
    """Remove `secret` from `text`. Applied to every outgoing message, because providers and
    libraries sometimes echo credentials back (OpenAI's 401 quotes part of the key)."""
    if secret:
        text = text.replace(secret, _REDACTED)
    return text


def _is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def backoff_seconds(attempt: int) -> float:
    """Wait before attempt `attempt + 1`: exponential, capped, with "equal jitter" (half
    fixed, half random) so that many workers hitting one rate limit do not retry in step."""
    nominal = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * (2 ** (attempt - 1)))
    return nominal / 2 + random.uniform(0, nominal / 2)


def parse_retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, or None if it did not say (or said nonsense).

    Understands `Retry-After` as delta-seconds or an HTTP date (RFC 9110), and OpenAI's
    `retry-after-ms`, which is more precise when present."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC dates are GMT; a naive result means "-0000"
        return None
    wall_now = time.time() if now is None else now
    return max(0.0, when.timestamp() - wall_now)


def error_text(content: bytes, fallback: str = "") -> str:
    """The provider's own explanation from an error body, in the shapes the supported APIs
    use: OpenAI `{"error": {"message"}}`, ElevenLabs `{"detail": {"message"}}` or
    `{"detail": "..."}`, FastAPI-style `{"detail": [{"msg"}]}`; otherwise the raw text."""
    text = content.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    message = _message_from_json(body) if body is not None else None
    if message is None:
        message = text
    message = re.sub(r"\s+", " ", message).strip()
    if len(message) > _MAX_ERROR_TEXT:
        message = message[: _MAX_ERROR_TEXT - 3] + "..."
    return message or fallback


def _message_from_json(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for key in ("error", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            inner = value.get("message") or value.get("msg")
            if isinstance(inner, str) and inner:
                return inner
        if isinstance(value, list) and value:
            parts = [
                str(item.get("msg") or item.get("message"))
                for item in value
                if isinstance(item, dict) and (item.get("msg") or item.get("message"))
            ]
            if parts:
                return "; ".join(parts)
    message = body.get("message")
    return message if isinstance(message, str) and message else None


def _attempts_note(attempts: int) -> str:
    return f"({attempts} attempt{'s' if attempts != 1 else ''})"


class _DeadlineReached(Exception):
    """Internal: the deadline passed while a response body was still arriving."""


class RetryingClient:
    """Sends one logical request for one `ProviderCall`, retrying as the module docstring
    describes. Use as a context manager so the connection pool is closed afterwards."""

    def __init__(self, provider: str, call: ProviderCall, *, secret: str = "") -> None:
        self.provider = provider
        self.call = call
        self.secret = secret
        self.attempts = 0
        self.unanswered = 0  # attempts the provider may have billed without answering
        self._started = time.monotonic()
        self._client = httpx.Client(follow_redirects=False)

    def __enter__(self) -> RetryingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    # -- errors ---------------------------------------------------------------------------

    def error(self, reason: str, *, retryable: bool = False) -> ProviderError:
        """A ProviderError for this provider with the key scrubbed and attempts filled in.
        Engines use it too (e.g. for unexpected 200 bodies) so that nothing bypasses the
        scrubbing."""
        return ProviderError(
            self.provider,
            scrub(reason, self.secret),
            attempts=max(self.attempts, 1),
            retryable=retryable,
            unanswered_attempts=self.unanswered,
        )

    def unexpected(self, what: str) -> ProviderError:
        """A 200 whose body is not what the API promises. Never retried: the same request
        would get the same answer, and we never invent output in its place."""
        return self.error(f"unexpected response from {self.provider}: {what}")

    def _timed_out(self) -> ProviderError:
        # The message names the time the call was given, which the code decided, rather
        # than a measured one that drifts with load.
        given = self.call.timeout_seconds
        if given is None:
            given = self.call.deadline - self._started
        return self.error(
            f"timed out after {given:.3g} s {_attempts_note(self.attempts)}", retryable=True
        )

    # -- requests -------------------------------------------------------------------------

    def post(self, url: str, **kwargs: Any) -> HttpResult:
        """POST with retries; kwargs go to httpx (json=, data=, files=, params=, headers=).
        Returns the first 2xx response or raises ProviderError."""
        return self.request("POST", url, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResult:
        started = time.monotonic()
        outcome = "failed"
        try:
            result = self._request(method, url, **kwargs)
            outcome = "ok"
            return result
        except ProviderError as exc:
            if exc.reason.startswith("timed out"):
                outcome = "timeout"
            raise
        finally:
            provider_call_seconds.labels(self.provider, outcome).observe(
                time.monotonic() - started
            )

    def _request(self, method: str, url: str, **kwargs: Any) -> HttpResult:
        last_failure = ""
        retry_reason = ""
        while True:
            remaining = self.call.remaining()
            if remaining <= 0:
                if self.attempts == 0:
                    raise self.error("deadline passed before the request was sent")
                raise self._timed_out()

            # Before every attempt: a name may resolve elsewhere than when it was set.
            refused = refusal(url, self.call.allowed_networks)
            if refused is not None:
                raise self.error(refused)
            self.attempts += 1
            unanswered_before = self.unanswered
            retry_after: float | None = None
            try:
                status, headers, content = self._attempt(method, url, remaining, kwargs)
            except (httpx.TimeoutException, _DeadlineReached) as exc:
                # The attempt's timeout is the time left, so a timeout means the deadline is
                # (all but) reached: nothing left to retry with.
                if not isinstance(exc, httpx.ConnectTimeout):  # the request was sent
                    self.unanswered += 1
                raise self._timed_out() from None
            except (httpx.InvalidURL, httpx.UnsupportedProtocol):
                # A configuration error, not a transient one. The URL itself stays out of the
                # message: a base_url may carry credentials in its userinfo part.
                raise self.error("invalid base_url: not an http(s) URL") from None
            except httpx.TransportError as exc:
                last_failure = f"connection failed: {_describe_transport_error(exc)}"
                retry_reason = "connection"
                if not isinstance(exc, httpx.ConnectError):  # dropped after it was sent
                    self.unanswered += 1
            except httpx.HTTPError as exc:
                # E.g. a body that fails to decode: retrying would not change it.
                raise self.error(f"request failed: {_describe_transport_error(exc)}") from None
            else:
                if 200 <= status <= 299:
                    return HttpResult(status, headers, content, self.attempts, self.unanswered)
                detail = error_text(content, fallback=httpx.codes.get_reason_phrase(status))
                last_failure = f"HTTP {status}: {detail}"
                retry_reason = str(status)
                if not _is_retryable_status(status):
                    raise self.error(f"{last_failure} {_attempts_note(self.attempts)}")
                if status != 429:  # a 5xx or 408: the provider may have done the work
                    self.unanswered += 1
                retry_after = parse_retry_after(headers)

            if self.attempts >= MAX_ATTEMPTS:
                raise self.error(
                    f"{last_failure} {_attempts_note(self.attempts)}; giving up", retryable=True
                )
            wait = retry_after if retry_after is not None else backoff_seconds(self.attempts)
            if time.monotonic() + wait >= self.call.deadline:
                why = (
                    f"Retry-After of {retry_after:g} s would pass the deadline"
                    if retry_after is not None
                    else "no time left before the deadline to retry"
                )
                raise self.error(
                    f"{last_failure} {_attempts_note(self.attempts)}; {why}", retryable=True
                )
            refused_retry = self._paid_retry_refusal(
                possibly_billed=self.unanswered > unanswered_before)
            if refused_retry:
                raise self.error(f"{last_failure} {_attempts_note(self.attempts)}; "
                                 f"not retried: {refused_retry}", retryable=True)
            provider_retries.labels(self.provider, retry_reason).inc()
            time.sleep(wait)

    def _paid_retry_refusal(self, *, possibly_billed: bool) -> str | None:
        """Why an attempt that repeats a possibly billed one may not be made, or None. (A
        429 or a refused connection cost nothing: those retries need no permission.)"""
        if not possibly_billed or self.call.before_paid_retry is None:
            return None
        return self.call.before_paid_retry()

    def _attempt(
        self, method: str, url: str, remaining: float, kwargs: dict[str, Any]
    ) -> tuple[int, httpx.Headers, bytes]:
        # Streaming lets us check the deadline between body chunks: httpx's timeout bounds
        # each network operation, not the whole response, so a server trickling bytes could
        # otherwise hold us past the deadline.
        timeout = httpx.Timeout(remaining)
        with self._client.stream(method, url, timeout=timeout, **kwargs) as response:
            chunks: list[bytes] = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > self.call.deadline:
                    raise _DeadlineReached
            return response.status_code, response.headers, b"".join(chunks)


def _describe_transport_error(exc: httpx.HTTPError) -> str:
    # httpx messages are short and carry no headers, but say what kind of failure it was
    # even when the message is empty (e.g. RemoteProtocolError from a dropped connection).
    message = str(exc).strip()
    kind = type(exc).__name__
    return f"{kind}: {message}" if message else kind


def wav_duration_seconds(data: bytes) -> float | None:
    """Duration of a PCM WAV, or None if `data` is not one. Engines use it both to check
    that "audio" really is WAV and to report its length.

    Walks the RIFF chunks by hand instead of using `wave`, because streamed WAVs (OpenAI's
    among them) declare a placeholder data size of 0xFFFFFFFF; the real length is whatever
    bytes actually follow the `data` chunk header."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    bytes_per_second = 0
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt " and size >= 16 and body + 16 <= len(data):
            channels, rate = struct.unpack_from("<HI", data, body + 2)
            (bits,) = struct.unpack_from("<H", data, body + 14)
            bytes_per_second = channels * rate * ((bits + 7) // 8)
        elif chunk_id == b"data":
            if not bytes_per_second:
                return None
            available = min(size, len(data) - body)
            return available / bytes_per_second
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    return None
