"""Sending alerts: only on the worker, never inside a request (DESIGN §8.5).

One drain job per endpoint at a time sends that endpoint's due deliveries one after another:
- an endpoint is held by a lease (`lease_until`, `lease_token`, taken with a conditional
  UPDATE), so a slow or dead receiver occupies at most one worker slot, and the other
  tenants' endpoints are drained by other slots at the same time;
- a drain stops after DRAIN_BUDGET_SECONDS and queues itself again, so even a receiver that
  answers slowly to a backlog of thousands gives the slot back regularly;
- each delivery is claimed (pending → sending) with a conditional UPDATE, tried once (10 s
  timeout, no redirects, the address checked at this try: outbound.py), and its attempt and
  next state are written in one transaction: delivered (2xx), pending again after the retry
  schedule (with jitter, or the receiver's Retry-After), or failed after the last try;
- 410 disables the endpoint; a failure when the endpoint has failed for FAILING_DISABLE_AFTER
  (5 days) without a success disables it too (shown in the hub's "Needs attention").

A retry due within a minute queues a drain delayed until then, in the transaction that
records the failed try. The periodic sweep (every 30 s) queues a drain for every endpoint
with a due delivery and no live lease (later retries come due this way), and puts back
deliveries left `sending` by a worker that died mid-try (at-least-once: a receiver dedupes
on `webhook-id`).
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import get_random_string

from .choices import DeliveryState, DisabledReason
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .outbound import TIMEOUT_SECONDS, Answer, post
from .services import drain_schedule, endpoint_disable, live_secrets
from .signing import headers_for

__all__ = [
    "DEFAULT_RETRY_SCHEDULE",
    "DRAIN_BUDGET_SECONDS",
    "FAILING_DISABLE_AFTER",
    "drain_endpoint",
    "retry_schedule",
    "sweep",
]

logger = logging.getLogger("agent33.webhooks")

# Seconds before the 2nd, 3rd, ... try (the Standard Webhooks schedule); ±20 % jitter.
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 86400)
JITTER = 0.2
MAX_RETRY_AFTER = 86400.0
DRAIN_BUDGET_SECONDS = 30.0
LEASE_SECONDS = DRAIN_BUDGET_SECONDS + 2 * TIMEOUT_SECONDS + 10
STUCK_SENDING_SECONDS = 3 * TIMEOUT_SECONDS  # a try never runs longer than its timeout
FAILING_DISABLE_AFTER = timedelta(days=5)
# A retry due sooner than this gets a delayed drain of its own; later ones the sweep finds.
DELAYED_DRAIN_MAX_SECONDS = 60.0


def retry_schedule() -> tuple[float, ...]:
    """AGENT33_WEBHOOK_RETRY_SCHEDULE (seconds, comma-separated) or the default; a bad entry
    is reported by the start-up check (apps.py) and the default is used."""
    raw = str(getattr(settings, "AGENT33_WEBHOOK_RETRY_SCHEDULE", "") or "").strip()
    if not raw:
        return DEFAULT_RETRY_SCHEDULE
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        return DEFAULT_RETRY_SCHEDULE
    if any(v < 0 for v in values):
        return DEFAULT_RETRY_SCHEDULE
    return values


def _acquire(endpoint_id: str, token: str) -> bool:
    now = timezone.now()
    return bool(WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    ).update(lease_until=now + timedelta(seconds=LEASE_SECONDS), lease_token=token,
             drain_queued_at=None))


def _release(endpoint_id: str, token: str) -> None:
    # A drain that found the lease held left `drain_queued_at` set (so alerts arriving while
    # this one sends queue no more jobs that would only find the lease held): clear it, so
    # the next alert queues a drain again.
    WebhookEndpoint.objects.filter(pk=endpoint_id, lease_token=token).update(
        lease_until=None, lease_token="", drain_queued_at=None)


def _due(endpoint_id: str, exclude: set[str]):
    return (WebhookDelivery.objects
            .filter(endpoint_id=endpoint_id, state=DeliveryState.PENDING,
                    next_attempt_at__lte=timezone.now())
            .exclude(pk__in=exclude)
            .order_by("next_attempt_at", "created_at"))


def drain_endpoint(endpoint_id: str, *, budget: float = DRAIN_BUDGET_SECONDS) -> int:
    """Send the endpoint's due deliveries (each at most once per drain); returns how many
    were tried. Queues another drain if the budget ran out with some still due."""
    token = get_random_string(24)
    started = time.monotonic()
    tried: set[str] = set()
    while True:
        if not _acquire(endpoint_id, token):
            return len(tried)  # the drain holding it looks for due deliveries when it ends
        try:
            while time.monotonic() - started < budget:
                delivery = _due(endpoint_id, tried).first()
                if delivery is None:
                    break
                tried.add(delivery.pk)
                _try(delivery)
        finally:
            _release(endpoint_id, token)
        # Released; something that came due meanwhile was seen by nobody else if its own
        # drain found the lease held, so look once more.
        if not _due(endpoint_id, tried).exists():
            return len(tried)
        if time.monotonic() - started >= budget:
            # Give the slot back and continue in a new job (behind whatever else waits).
            endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
            if endpoint is not None:
                with transaction.atomic():
                    drain_schedule(endpoint_id=endpoint_id, tenant_id=endpoint.tenant_id)
            return len(tried)


def _claim(delivery: WebhookDelivery) -> bool:
    now = timezone.now()
    return bool(WebhookDelivery.objects.filter(
        pk=delivery.pk, state=DeliveryState.PENDING, next_attempt_at__lte=now
    ).update(state=DeliveryState.SENDING, claimed_at=now))


def _try(delivery: WebhookDelivery) -> None:
    if not _claim(delivery):
        return
    endpoint = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).first()
    if endpoint is None:
        return
    body = delivery.body.encode("utf-8")
    attempted_at = timezone.now()
    try:
        secrets_ = live_secrets(endpoint)
    except Exception as exc:  # a secret no configured key decrypts: a failed try, logged
        logger.error("webhook endpoint %s: cannot sign (%s)", endpoint.pk, type(exc).__name__)
        answer = Answer(None, 0, f"cannot sign: {exc}"[:500])
    else:
        # A fresh timestamp per try (receivers refuse old ones); the id and body never change.
        headers = headers_for(secrets_, delivery.message_id, int(time.time()), body)
        answer = post(endpoint.url, body, headers)
    _record(delivery, endpoint, answer, attempted_at)


def _next_delay(attempts: int, retry_after: float | None) -> float | None:
    """Seconds until the next try after `attempts` tries, or None when none is left."""
    schedule = retry_schedule()
    if attempts > len(schedule):
        return None
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
    return schedule[attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)


def _record(delivery: WebhookDelivery, endpoint: WebhookEndpoint, answer, attempted_at) -> None:
    now = timezone.now()
    ok = answer.status_code is not None and 200 <= answer.status_code < 300
    attempts = delivery.attempt_count + 1
    with transaction.atomic():
        common = {"attempt_count": F("attempt_count") + 1, "claimed_at": None,
                  "last_status_code": answer.status_code, "last_error": answer.error[:500]}
        mine = WebhookDelivery.objects.filter(pk=delivery.pk, state=DeliveryState.SENDING)
        # Lock the row first: gone (its endpoint was deleted meanwhile) or put back by the
        # sweep, there is nothing to record against.
        if not mine.update(claimed_at=None):
            return
        WebhookAttempt.objects.create(
            tenant_id=delivery.tenant_id, delivery_id=delivery.pk, attempted_at=attempted_at,
            status_code=answer.status_code, duration_ms=answer.duration_ms,
            error=answer.error[:500])
        if ok:
            mine.update(state=DeliveryState.DELIVERED, finished_at=now, next_attempt_at=None,
                        **common)
            WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False
                                               ).update(failing_since=None)
            return
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
            failing_since=attempted_at)
        if answer.status_code == 410:
            mine.update(state=DeliveryState.FAILED, finished_at=now, next_attempt_at=None,
                        **common)
            endpoint_disable(endpoint_id=endpoint.pk, reason=DisabledReason.GONE,
                             detail="endpoint disabled: the receiver answered 410 Gone")
            logger.warning("webhook endpoint %s disabled: 410 Gone", endpoint.pk)
            return
        delay = _next_delay(attempts, answer.retry_after)
        if delay is None:
            mine.update(state=DeliveryState.FAILED, finished_at=now, next_attempt_at=None,
                        **common)
        else:
            mine.update(state=DeliveryState.PENDING,
                        next_attempt_at=now + timedelta(seconds=delay), **common)
            if delay <= DELAYED_DRAIN_MAX_SECONDS:
                # A little after it comes due (the job's clock starts a moment later).
                drain_schedule(endpoint_id=endpoint.pk, tenant_id=delivery.tenant_id,
                               delay=delay + 0.5)
        failing_since = (WebhookEndpoint.objects.filter(pk=endpoint.pk)
                         .values_list("failing_since", flat=True).first())
        if failing_since is not None and now - failing_since >= FAILING_DISABLE_AFTER:
            endpoint_disable(endpoint_id=endpoint.pk, reason=DisabledReason.FAILING,
                             detail="endpoint disabled: every delivery failed for 5 days")
            logger.warning("webhook endpoint %s disabled: failing since %s", endpoint.pk,
                           failing_since.isoformat())


def sweep(*, limit: int = 500) -> int:
    """Put back deliveries stuck in `sending`, then queue a drain for every enabled endpoint
    with a due delivery and no live lease, in every tenant (each drain in its endpoint's
    tenant scope). Returns how many drains were queued."""
    from agent33.tenancy.context import tenant_scope
    from agent33.tenancy.models import Tenant

    now = timezone.now()
    WebhookDelivery.all_tenants.filter(
        state=DeliveryState.SENDING,
        claimed_at__lt=now - timedelta(seconds=STUCK_SENDING_SECONDS),
    ).update(state=DeliveryState.PENDING, claimed_at=None, next_attempt_at=now)
    due_endpoints = (WebhookDelivery.all_tenants
                     .filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
                     .values_list("endpoint_id", flat=True).distinct()[:limit])
    queued = 0
    for endpoint_id, tenant_id in (WebhookEndpoint.all_tenants
                                   .filter(pk__in=list(due_endpoints), enabled=True)
                                   .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
                                   .values_list("pk", "tenant_id")):
        with tenant_scope(Tenant(pk=tenant_id)), transaction.atomic():
            queued += drain_schedule(endpoint_id=endpoint_id, tenant_id=tenant_id)
    return queued
