"""`Idempotency-Key` on every POST (Stripe semantics).

The same key and body within 24 h replays the first response with `Idempotent-Replayed: true`;
the same key with a different body is 422; a request still in flight with that key is 409.

Keys belong to the token that used them, and nothing is replayed before the request has been
authenticated, authorised (the route's scope) and throttled exactly like a fresh one: the
replay happens inside DRF, right after `initial()` (IdempotentMixin), not in a middleware in
front of it. So a read-only token of the same tenant that sends another token's key gets its
own 403, a revoked token its 401.

Two halves, because the response to remember exists only after every middleware ran:
- IdempotencyMiddleware (outside DRF) checks the header, fingerprints the body, and after the
  view stores the response of a claimed key (or frees the key on a 5xx or an exception).
- IdempotentMixin (inside DRF, after authentication, scopes and throttles) claims the key for
  the token, or answers with the stored response, 409 or 422.

A request refused before the claim (401, 403, 429, a bad key) leaves no record. 5xx answers
are not remembered, so a retry runs again.

A key stays "in flight" (409 to every retry) for as long as its request's work can run: the
longest any app says a request's work may take (`register_work_bound`; multimodal: the
policy ceiling on a request's timeout plus the reaper's grace, after which the reaper has
ended the work whatever became of the process). Only past that is a key whose request never
answered (its process died) taken as abandoned, so a retry never runs the work a second
time while the first may still be running it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException

from agent33.tenancy.models import ApiToken, IdempotencyRecord

from .exceptions import Conflict, json_error

__all__ = [
    "IdempotencyMiddleware",
    "IdempotentMixin",
    "in_flight_guard",
    "purge_expired_records",
    "register_work_bound",
]

HEADER = "Idempotency-Key"
REPLAY_WINDOW = timedelta(hours=24)
# The floor of the in-flight guard, for a service whose apps register no longer work: a
# request without long work of its own (the slowest, a 10,000-event bulk, takes seconds)
# is long over by then.
MIN_IN_FLIGHT_GUARD = timedelta(minutes=5)
NOT_REMEMBERED = {401, 403, 429}
REPLAYED_HEADERS = ("Location", "Link", "Retry-After")


_work_bounds: list[Callable[[], float]] = []


def register_work_bound(seconds: Callable[[], float]) -> None:
    """An app whose requests may run long work registers how long that work can run at most
    (a callable of seconds, read at each claim so settings changes apply)."""
    _work_bounds.append(seconds)


def in_flight_guard() -> timedelta:
    """How long a key whose request has not answered keeps refusing retries (409)."""
    return max([MIN_IN_FLIGHT_GUARD, *(timedelta(seconds=bound()) for bound in _work_bounds)])


class KeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with a different request body or path."
    default_code = "idempotency_key_reused"


class KeyInFlight(Conflict):
    default_detail = "A request with this Idempotency-Key is still in progress."
    default_code = "idempotency_key_in_flight"


class _Replay(Exception):
    """Raised from `initial()` to answer with a stored response instead of the handler."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__()
        self.response = response


@dataclass
class PendingKey:
    """What the middleware knows before the view: the key and the request's fingerprint; the
    record once the view's token claimed it."""

    key: str
    fingerprint: str
    record: IdempotencyRecord | None = field(default=None)

    def claim(self, token: ApiToken) -> None:
        """Claim the key for `token`, or raise _Replay / KeyReused / KeyInFlight."""
        now = timezone.now()
        mine = IdempotencyRecord.objects.filter(token=token, key=self.key)
        mine.filter(created_at__lt=now - REPLAY_WINDOW).delete()
        mine.filter(
            state=IdempotencyRecord.IN_FLIGHT, created_at__lt=now - in_flight_guard()
        ).delete()
        try:
            with transaction.atomic():
                self.record = IdempotencyRecord.objects.create(
                    token=token, key=self.key, fingerprint=self.fingerprint, created_at=now
                )
        except IntegrityError:
            self._answer_existing(mine.first())

    def _answer_existing(self, record: IdempotencyRecord | None) -> None:
        if record is None:  # finished and expired in between: ask for a retry
            raise KeyInFlight("A request with this Idempotency-Key just finished; retry.")
        if record.fingerprint != self.fingerprint:
            raise KeyReused()
        if record.state == IdempotencyRecord.IN_FLIGHT:
            raise KeyInFlight()
        raise _Replay(_replay(record))


class IdempotentMixin:
    """For every DRF view that accepts POST (the shared bases in agent33/api/viewsets.py):
    a POST with an Idempotency-Key is claimed or replayed only once DRF has authenticated
    the token and checked its scope and throttle (`initial()`)."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        pending: PendingKey | None = getattr(request._request, "idempotency", None)
        principal = request.user
        token = getattr(principal, "token", None)
        if pending is not None and request.method == "POST" and token is not None:
            pending.claim(token)

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            return exc.response
        return super().handle_exception(exc)


def _fingerprint(request) -> str:
    digest = hashlib.sha256()
    content_type = request.content_type or ""
    for part in (request.method, request.get_full_path(), content_type):
        digest.update(part.encode())
        digest.update(b"\0")
    if content_type == "multipart/form-data":
        # The boundary differs on every retry; what was sent does not.
        for name, value in sorted(request.POST.lists()):
            digest.update(f"{name}={value}\0".encode())
        for name, files in sorted(request.FILES.lists()):
            for upload in files:
                digest.update(f"{name}:{upload.name}\0".encode())
                for chunk in upload.chunks():
                    digest.update(chunk)
                upload.seek(0)
    else:
        digest.update(request.body)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(
        bytes(record.response_body), status=record.status_code, content_type=record.content_type
    )
    for name, value in record.response_headers.items():
        response[name] = value
    response["Idempotent-Replayed"] = "true"
    return response


def purge_expired_records(*, now=None) -> int:
    """Delete records past the replay window (their keys are free anyway); beat runs it."""
    now = now or timezone.now()
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=now - REPLAY_WINDOW).delete()
    return deleted


class IdempotencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None or not request.path.startswith("/v1/"):
            return self.get_response(request)
        if not key or len(key) > 255 or not key.isprintable():
            return json_error(
                400,
                "Idempotency-Key must be 1-255 printable characters.",
                "invalid_idempotency_key",
            )
        pending = request.idempotency = PendingKey(key=key, fingerprint=_fingerprint(request))
        try:
            response = self.get_response(request)
        except BaseException:
            if pending.record is not None:
                pending.record.delete()
            raise
        record = pending.record
        if record is None:  # refused before the claim, answered from the record, or not DRF
            return response
        if response.status_code >= 500 or response.status_code in NOT_REMEMBERED or (
            response.streaming
        ):
            record.delete()
            return response
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            state=IdempotencyRecord.COMPLETED,
            status_code=response.status_code,
            content_type=response.get("Content-Type", ""),
            # A view answering with a secret shown once (a webhook endpoint's signing secret)
            # gives the body to remember without it: a replay must not show it again, and it
            # is never stored in the clear.
            response_body=getattr(response, "idempotency_content", None) or response.content,
            response_headers={h: response[h] for h in REPLAYED_HEADERS if response.has_header(h)},
        )
        return response
