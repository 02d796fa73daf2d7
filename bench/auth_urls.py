"""URLs for bench/auth_overhead.py: one no-op view, with and without token auth."""

from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from agent33.auth import scopes


class NoOp(APIView):
    required_scopes = scopes.WORKFLOWS_READ

    def get(self, request):
        return Response({"ok": True})


class AnonymousNoOp(NoOp):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()


urlpatterns = [
    path("bench/noop-auth", NoOp.as_view()),
    path("bench/noop-anon", AnonymousNoOp.as_view()),
    path("", include("agent33.urls")),
]
