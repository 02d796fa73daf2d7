"""Shared bases so resource views stay declarative."""

from __future__ import annotations

from rest_framework import viewsets
from rest_framework.views import APIView

from agent33.errors import InvalidInput
from agent33.tenancy.models import Tenant

from .idempotency import IdempotentMixin

__all__ = ["ApiView", "TenantScopedViewSet", "actor_of", "tenant_of"]


def tenant_of(request) -> Tenant:
    """The tenant that owns whatever this request creates: always the token's, never the body's."""
    tenant = getattr(request.user, "tenant", None)
    if tenant is None:
        raise InvalidInput(
            "Operator tokens act on existing objects of any tenant but cannot create "
            "tenant-owned objects; use a tenant token.",
            code="tenant_required",
        )
    return tenant


def actor_of(request) -> str:
    """A label for audit records: the token (API) or the staff user (admin pages)."""
    user = request.user
    label = getattr(user, "actor_label", None)
    if label:
        return label
    return f"user:{user.get_username()}" if user and user.is_authenticated else "anonymous"


class ApiView(IdempotentMixin, APIView):
    """Base of every non-viewset API view that accepts POST: Idempotency-Key replays only
    after authentication, the scope check and the throttle (agent33/api/idempotency.py)."""


class TenantScopedViewSet(IdempotentMixin, viewsets.GenericViewSet):
    """Lists and lookups read through the model's default manager, which the authenticated
    token has already scoped to its tenant (or to all tenants for operators), so another
    tenant's object is a plain 404 from get_object()."""

    model = None  # set by subclasses
    lookup_value_regex = r"[A-Za-z0-9_.:-]+"

    def get_queryset(self):
        return self.model.objects.all()
