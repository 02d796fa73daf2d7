"""Every write of webhooks: endpoints (create, update, delete, rotate), alerts (one delivery
per subscribed endpoint) and replays. Sending is the worker's (delivery.py).

Lock order (README "Lock order"): creating an endpoint locks the tenant's row (the 20-endpoint
limit is a count under that lock, so two concurrent creates cannot both pass 19); nothing
else here locks a row of another app.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agent33 import jobs
from agent33.errors import InvalidInput, NotFound, StateConflict
from agent33.networks import outbound_allowed_networks, outbound_refusal
from agent33.tenancy.models import Tenant
from multimodal import encryption

from .choices import DeliveryState, DisabledReason, EventType
from .models import (
    MAX_ENDPOINTS_PER_TENANT,
    MAX_URL_LENGTH,
    WebhookDelivery,
    WebhookEndpoint,
)
from .signing import new_secret

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PREVIOUS_SECRET_HOURS",
    "alert_emit",
    "delivery_replay",
    "drain_schedule",
    "endpoint_create",
    "endpoint_delete",
    "endpoint_disable",
    "endpoint_rotate_secret",
    "endpoint_update",
    "live_secrets",
    "validate_event_types",
    "validate_url",
]

PREVIOUS_SECRET_HOURS = 24
# A queued drain that has not started after this long was lost (a broker refused it, its
# job failed): the next alert or the sweep queues another.
DRAIN_QUEUED_STALE = timedelta(minutes=2)
MAX_PAYLOAD_BYTES = 20_000


# --- validation --------------------------------------------------------------------------


def validate_url(value: str) -> str:
    """An http(s) URL without credentials or fragment whose host is public (or allowed):
    400 naming `url`, `url_not_allowed` for an address the outbound rules refuse."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("url is required.", field="url")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidInput(f"url is longer than {MAX_URL_LENGTH} characters.", field="url")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput("url must not contain whitespace or control characters.",
                           field="url")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise InvalidInput("url is not a valid URL.", field="url") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("url must start with http:// or https://.", field="url")
    if "@" in parts.netloc:
        raise InvalidInput("url must not contain credentials (user:password@).", field="url")
    if not parts.hostname:
        raise InvalidInput("url must name a host.", field="url")
    if parts.fragment or value.endswith("#"):
        raise InvalidInput("url must not have a fragment.", field="url")
    refused = outbound_refusal(value, outbound_allowed_networks())
    if refused is not None:
        raise InvalidInput(refused, code="url_not_allowed", field="url")
    return value


def validate_event_types(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(
            f"event_types must be a non-empty list of: {', '.join(EventType.values)}.",
            field="event_types")
    unknown = [item for item in value if item not in EventType.values]
    if unknown:
        shown = ", ".join(repr(item)[:60] for item in unknown[:5])
        raise InvalidInput(
            f"event_types has unknown event type(s) {shown}; known: "
            f"{', '.join(EventType.values)}.", field="event_types")
    return sorted(set(value), key=EventType.values.index)


# --- endpoints ---------------------------------------------------------------------------


def endpoint_create(*, tenant: Tenant, url: str, event_types: list[str],
                    description: str = "") -> tuple[WebhookEndpoint, str]:
    """A new enabled endpoint and its secret (returned once, stored encrypted)."""
    url = validate_url(url)
    event_types = validate_event_types(event_types)
    encryption.require_available()
    secret = new_secret()
    with transaction.atomic():
        # The limit is a count under the tenant's row lock: concurrent creates queue here.
        list(Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk)
             .values_list("pk", flat=True))
        count = WebhookEndpoint.objects.filter(tenant=tenant).count()
        if count >= MAX_ENDPOINTS_PER_TENANT:
            raise StateConflict(
                f"Tenant {tenant.pk} already has {count} webhook endpoints, the most a tenant "
                f"may have ({MAX_ENDPOINTS_PER_TENANT}); delete one first.",
                code="too_many_endpoints")
        now = timezone.now()
        endpoint = WebhookEndpoint.objects.create(
            tenant=tenant, url=url, event_types=event_types, description=description,
            secret_encrypted=encryption.encrypt(secret), created_at=now, updated_at=now)
    return endpoint, secret


def endpoint_update(*, endpoint: WebhookEndpoint, **changes: Any) -> WebhookEndpoint:
    """PATCH: url, event_types, description, enabled. Enabling again clears why it was
    disabled and its failure clock; disabling marks its waiting deliveries failed."""
    fields: dict[str, Any] = {}
    if "url" in changes:
        fields["url"] = validate_url(changes["url"])
    if "event_types" in changes:
        fields["event_types"] = validate_event_types(changes["event_types"])
    if "description" in changes:
        fields["description"] = changes["description"]
    with transaction.atomic():
        # Locked first, so a DELETE racing this PATCH makes it a 404, never a half update.
        if not list(WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk)
                    .values_list("pk", flat=True)):
            raise NotFound(f"Webhook endpoint {endpoint.pk} was deleted.")
        if "enabled" in changes:
            if changes["enabled"]:
                fields.update(enabled=True, disabled_reason="", disabled_at=None,
                              failing_since=None)
            elif endpoint.enabled:
                endpoint_disable(endpoint_id=endpoint.pk, reason=DisabledReason.BY_USER)
                endpoint.refresh_from_db()
        if fields:
            fields["updated_at"] = timezone.now()
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(**fields)
        if fields.get("enabled"):
            drain_schedule(endpoint_id=endpoint.pk, tenant_id=endpoint.tenant_id)
        endpoint.refresh_from_db()
    return endpoint


def endpoint_disable(*, endpoint_id: str, reason: str, detail: str = "") -> bool:
    """Disable an endpoint (by its user, a 410, 5 days of failures): its waiting deliveries
    fail with the reason (a replay sends one again once it is enabled). False when it was
    already disabled."""
    now = timezone.now()
    with transaction.atomic():
        updated = WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True).update(
            enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now)
        if not updated:
            return False
        WebhookDelivery.objects.filter(
            endpoint_id=endpoint_id, state=DeliveryState.PENDING
        ).update(state=DeliveryState.FAILED, finished_at=now, next_attempt_at=None,
                 last_error=(detail or f"endpoint disabled ({reason})")[:500])
    return True


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    # Its deliveries and attempts go with it (CASCADE); a drain running for it finds nothing.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> tuple[WebhookEndpoint, str]:
    """A new secret; the current one keeps signing beside it for PREVIOUS_SECRET_HOURS."""
    encryption.require_available()
    secret = new_secret()
    now = timezone.now()
    with transaction.atomic():
        # `endpoint` was found through the caller's tenant scope; this re-reads it by key.
        locked = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint.pk)
        locked.previous_secret_encrypted = locked.secret_encrypted
        locked.previous_secret_expires_at = now + timedelta(hours=PREVIOUS_SECRET_HOURS)
        locked.secret_encrypted = encryption.encrypt(secret)
        locked.updated_at = now
        locked.save(update_fields=["previous_secret_encrypted", "previous_secret_expires_at",
                                   "secret_encrypted", "updated_at"])
    return locked, secret


def live_secrets(endpoint: WebhookEndpoint, *, now=None) -> list[str]:
    """The secrets that sign now: the current one, and the previous one until it expires."""
    now = now or timezone.now()
    found = [encryption.decrypt(endpoint.secret_encrypted)]
    if (endpoint.previous_secret_encrypted and endpoint.previous_secret_expires_at
            and endpoint.previous_secret_expires_at > now):
        found.append(encryption.decrypt(endpoint.previous_secret_encrypted))
    return found


# --- alerts ------------------------------------------------------------------------------


def _body(event_type: str, data: dict[str, Any], now) -> str:
    payload = {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"),
               "data": data}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(body.encode()) > MAX_PAYLOAD_BYTES:
        # Long free text (a title, an error) or a large JSON value (a budget's limits) is what
        # grows: cut strings, then leave out any value still over 2 kB (ids and links stay).
        data = {k: (v[:200] + "…" if isinstance(v, str) and len(v) > 200 else v)
                for k, v in data.items()}
        data = {k: (v if len(json.dumps(v, default=str)) <= 2000 else "(left out: too large)")
                for k, v in data.items()}
        payload["data"] = data
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    return body


def alert_emit(*, tenant_id: str, event_type: str, data: dict[str, Any]) -> list[str]:
    """One delivery of the event for each of the tenant's enabled endpoints subscribed to it,
    and a drain job for each such endpoint, in one transaction (the database queue commits the
    jobs with the deliveries). Returns the deliveries' ids."""
    endpoints = [e for e in WebhookEndpoint.objects.filter(tenant_id=tenant_id,
                                                               enabled=True)
                 .only("pk", "event_types", "tenant_id")
                 if event_type in e.event_types]
    if not endpoints:
        return []
    now = timezone.now()
    body = _body(event_type, data, now)
    with transaction.atomic():
        created = WebhookDelivery.objects.bulk_create([
            WebhookDelivery(tenant_id=tenant_id, endpoint_id=e.pk, event_type=event_type,
                            body=body, next_attempt_at=now, created_at=now)
            for e in endpoints])
        for endpoint in endpoints:
            drain_schedule(endpoint_id=endpoint.pk, tenant_id=tenant_id)
    return [d.pk for d in created]


def drain_schedule(*, endpoint_id: str, tenant_id: str, delay: float | None = None) -> bool:
    """Queue a drain job for the endpoint unless one is already waiting (the flag is set with
    a conditional UPDATE, so of concurrent alerts one queues it). Call inside the transaction
    that made deliveries due."""
    if delay is None:
        now = timezone.now()
        free = Q(drain_queued_at__isnull=True) | Q(drain_queued_at__lt=now - DRAIN_QUEUED_STALE)
        if not WebhookEndpoint.objects.filter(free, pk=endpoint_id).update(
                drain_queued_at=now):
            return False
    jobs.enqueue("webhooks.drain", tenant_id=tenant_id, delay=delay, endpoint_id=endpoint_id)
    return True


def delivery_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery's message again as a new delivery (same `webhook-id` and body, so a
    receiver that already handled it can tell), with a fresh retry schedule."""
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        raise StateConflict(
            f"Endpoint {endpoint.pk} is disabled ({endpoint.disabled_reason or 'by_user'}); "
            "enable it (PATCH enabled=true) before replaying its deliveries.",
            code="endpoint_disabled")
    if delivery.state in (DeliveryState.PENDING, DeliveryState.SENDING):
        raise StateConflict(
            f"Delivery {delivery.pk} is {delivery.state}: it is still being tried.",
            code="delivery_in_progress")
    now = timezone.now()
    with transaction.atomic():
        replay = WebhookDelivery.objects.create(
            tenant_id=delivery.tenant_id, endpoint=endpoint, event_type=delivery.event_type,
            message_id=delivery.message_id, body=delivery.body, next_attempt_at=now,
            replay_of=delivery, created_at=now)
        drain_schedule(endpoint_id=endpoint.pk, tenant_id=delivery.tenant_id)
    return replay

