from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import ArtifactViewSet, PolicyView, RequestViewSet, StatsView

router = SimpleRouter(trailing_slash=False)
router.register("artifacts", ArtifactViewSet, basename="multimodal-artifact")
router.register("requests", RequestViewSet, basename="multimodal-request")

urlpatterns = [
    path("tenants/<str:tenant_id>/policy", PolicyView.as_view(), name="multimodal-policy"),
    path("stats", StatsView.as_view(), name="multimodal-stats"),
    *router.urls,
]
