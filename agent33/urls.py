from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agent33.api.views import WhoAmIView, healthz, readyz
from agent33.observability.views import MetricsView

handler400 = "agent33.api.views.json_bad_request"
handler404 = "agent33.api.views.json_not_found"
handler500 = "agent33.api.views.json_server_error"

v1 = [
    path("auth/whoami", WhoAmIView.as_view(), name="whoami"),
    path("operations/", include("operations.api.urls")),
    path("multimodal/", include("multimodal.api.urls")),
    path("outcomes/", include("outcomes.api.urls")),
    path("webhooks/", include("webhooks.api.urls")),
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(
            url_name="schema", authentication_classes=[], permission_classes=[]
        ),
        name="swagger-ui",
    ),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("v1/", include(v1)),
    path("admin/", admin.site.urls),
]
