"""Test-only route: a view that logs, beside the project's own routes."""

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


urlpatterns = [
    path("test/chatty", Chatty.as_view()),
    path("", include("agent33.urls")),
]
