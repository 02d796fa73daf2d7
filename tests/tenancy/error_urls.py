"""Test-only routes that exercise the error handler."""

import threading

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from agent33.api.viewsets import ApiView
from agent33.auth.permissions import AUTHENTICATED


class Boom(APIView):
    required_scopes = AUTHENTICATED

    def get(self, request):
        raise RuntimeError("secret internals: db password is hunter2")


class Echo(APIView):
    required_scopes = AUTHENTICATED

    def post(self, request):
        return Response({"received": request.data})


CREATED: list = []


class Create(ApiView):
    """Stands in for any creating endpoint: records a side effect per executed request."""

    required_scopes = AUTHENTICATED

    def post(self, request):
        if request.data.get("invalid"):
            from rest_framework.exceptions import ValidationError

            raise ValidationError({"invalid": ["Not allowed."]})
        import time

        time.sleep(0.05)  # long enough for concurrent duplicates to overlap
        CREATED.append(request.data)
        return Response({"n": request.data.get("n"), "tenant": request.user.tenant.slug,
                         "seq": len(CREATED)}, status=201)


RUNNING = threading.Event()  # set by Slow once it runs
RELEASE = threading.Event()  # Slow answers once this is set (or after 10 s)


class Slow(ApiView):
    """A request whose work runs until the test releases it."""

    required_scopes = AUTHENTICATED

    def post(self, request):
        RUNNING.set()
        RELEASE.wait(10)
        CREATED.append(request.data)
        return Response({"seq": len(CREATED)}, status=201)


class Public(APIView):
    """Like the schema and docs pages: no token, throttled per client address."""

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        return Response({"ok": True})


class Undeclared(APIView):
    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("v1/test/boom", Boom.as_view()),
    path("v1/test/echo", Echo.as_view()),
    path("v1/test/undeclared", Undeclared.as_view()),
    path("v1/test/create", Create.as_view()),
    path("v1/test/slow", Slow.as_view()),
    path("v1/test/public", Public.as_view()),
    path("", include("agent33.urls")),
]
