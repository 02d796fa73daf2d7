"""Bench-only URLs: a no-op view with and without token auth (bench/auth_overhead.py), and
the minimal durable write that bench/hub_scale.py compares a control with."""

from django.db import transaction
from django.urls import include, path
from django.utils import timezone
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from agent33.api.viewsets import tenant_of
from agent33.auth import scopes
from operations.models import StatusChange


class NoOp(APIView):
    required_scopes = scopes.WORKFLOWS_READ

    def get(self, request):
        return Response({"ok": True})


class AnonymousNoOp(NoOp):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()


class MinimalDurableWrite(APIView):
    """The cheapest durable write the stack can make: authenticated and scope-checked like a
    control, then ONE ORM insert (an audit row, as a control writes) in a transaction."""

    required_scopes = scopes.WORKFLOWS_EXECUTE

    def post(self, request):
        with transaction.atomic():
            StatusChange.objects.create(
                tenant=tenant_of(request), process_type="workflow", process_id="bench",
                action="pause", cause="operator", path="hub", actor="bench",
                state_before="running", state_after="paused",
                created_at=timezone.now(),
            )
        return Response({"ok": True})


urlpatterns = [
    path("bench/durable-write", MinimalDurableWrite.as_view()),
    path("bench/noop-auth", NoOp.as_view()),
    path("bench/noop-anon", AnonymousNoOp.as_view()),
    path("", include("agent33.urls")),
]
