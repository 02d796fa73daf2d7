from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import (
    ArtifactViewSet,
    PolicyView,
    ProviderKeyListView,
    ProviderKeyView,
    RequestViewSet,
    StatsView,
)

router = SimpleRouter(trailing_slash=False)
router.register("artifacts", ArtifactViewSet, basename="multimodal-artifact")
router.register("requests", RequestViewSet, basename="multimodal-request")

urlpatterns = [
    path("tenants/<str:tenant_id>/policy", PolicyView.as_view(), name="multimodal-policy"),
    path("tenants/<str:tenant_id>/providers", ProviderKeyListView.as_view(),
         name="multimodal-provider-keys"),
    path("tenants/<str:tenant_id>/providers/<str:provider>", ProviderKeyView.as_view(),
         name="multimodal-provider-key"),
    path("stats", StatsView.as_view(), name="multimodal-stats"),
    *router.urls,
]
