from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import (
    ArtifactViewSet,
    PolicyView,
    PriceListView,
    PriceView,
    ProviderKeyListView,
    ProviderKeyView,
    RequestViewSet,
    SpendView,
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
    path("tenants/<str:tenant_id>/spend", SpendView.as_view(), name="multimodal-spend"),
    path("stats", StatsView.as_view(), name="multimodal-stats"),
    path("prices", PriceListView.as_view(), name="multimodal-prices"),
    # <path:>: models of self-hosted servers may contain slashes (org/model).
    path("prices/<str:provider>/<path:model>", PriceView.as_view(), name="multimodal-price"),
    *router.urls,
]
