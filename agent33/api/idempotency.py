"""`Idempotency-Key` on every POST (Stripe semantics).

The same key and body within 24 h replays the first response with `Idempotent-Replayed: true`;
the same key with a different body is 422; a request still in flight with that key is 409.
Keys belong to the caller's tenant (operator tokens: to the token). 5xx responses, and the
401/403/429 answers that never reached the endpoint's logic, are not remembered, so a retry
runs again.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from agent33.auth.authentication import token_from_header
from agent33.tenancy.models import IdempotencyRecord

from .exceptions import json_error

__all__ = ["IdempotencyMiddleware"]

HEADER = "Idempotency-Key"
REPLAY_WINDOW = timedelta(hours=24)
# A request that has been "in flight" this long died with its process; its key is free again.
ABANDONED_AFTER = timedelta(minutes=5)
NOT_REMEMBERED = {401, 403, 429}
REPLAYED_HEADERS = ("Location", "Link", "Retry-After")


def _owner(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "").encode("latin-1", "ignore")
    if not header:
        return None
    try:
        token = token_from_header(header)
    except AuthenticationFailed:
        return None  # the view answers 401 itself
    return token.tenant_id or f"operator:{token.prefix}"


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
        owner = _owner(request)
        if owner is None:
            return self.get_response(request)
        fingerprint = _fingerprint(request)
        now = timezone.now()
        IdempotencyRecord.objects.filter(owner=owner, key=key).filter(
            created_at__lt=now - REPLAY_WINDOW
        ).delete()
        IdempotencyRecord.objects.filter(
            owner=owner, key=key, state=IdempotencyRecord.IN_FLIGHT,
            created_at__lt=now - ABANDONED_AFTER,
        ).delete()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    owner=owner, key=key, fingerprint=fingerprint, created_at=now
                )
        except IntegrityError:
            return self._answer_existing(owner, key, fingerprint)

        try:
            response = self.get_response(request)
        except BaseException:
            record.delete()
            raise
        if response.status_code >= 500 or response.status_code in NOT_REMEMBERED or (
            response.streaming
        ):
            record.delete()
            return response
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            state=IdempotencyRecord.COMPLETED,
            status_code=response.status_code,
            content_type=response.get("Content-Type", ""),
            response_body=response.content,
            response_headers={h: response[h] for h in REPLAYED_HEADERS if response.has_header(h)},
        )
        return response

    @staticmethod
    def _answer_existing(owner: str, key: str, fingerprint: str) -> HttpResponse:
        record = IdempotencyRecord.objects.filter(owner=owner, key=key).first()
        if record is None:  # finished and expired in between: ask for a retry
            return json_error(
                409, "A request with this Idempotency-Key just finished; retry.",
                "idempotency_key_in_flight",
            )
        if record.fingerprint != fingerprint:
            return json_error(
                422,
                "This Idempotency-Key was used with a different request body or path.",
                "idempotency_key_reused",
            )
        if record.state == IdempotencyRecord.IN_FLIGHT:
            return json_error(
                409, "A request with this Idempotency-Key is still in progress.",
                "idempotency_key_in_flight",
            )
        return _replay(record)
