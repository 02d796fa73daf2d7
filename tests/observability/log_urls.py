"""Test-only routes: a view that logs and views that fail, beside the project's own routes."""

import logging

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from agent33.auth.permissions import AUTHENTICATED

logger = logging.getLogger("tests.observability.view")


class Chatty(APIView):
    required_scopes = AUTHENTICATED

    def get(self, request):
        logger.info("working on it")
        logger.warning("still working")
        return Response({"ok": True})


class Failing(APIView):
    required_scopes = AUTHENTICATED

    def get(self, request):
        logger.info("about to fail")
        raise RuntimeError("the API view failed")


def failing_page(request):
    """Outside DRF: Django's own handler turns the exception into the 500."""
    raise RuntimeError("the plain view failed")


urlpatterns = [
    path("test/chatty", Chatty.as_view()),
    path("test/failing", Failing.as_view()),
    path("test/failing-page", failing_page),
    path("", include("agent33.urls")),
]
