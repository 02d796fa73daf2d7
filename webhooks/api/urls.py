"""Mounted at /v1/webhooks/ (no trailing slashes, DESIGN §5)."""

from rest_framework.routers import SimpleRouter

from .views import DeliveryViewSet, EndpointViewSet

router = SimpleRouter(trailing_slash=False)
router.register("endpoints", EndpointViewSet, basename="webhook-endpoint")
router.register("deliveries", DeliveryViewSet, basename="webhook-delivery")

urlpatterns = router.urls
