from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import CtrfIngestView, DashboardView, OutcomeEventViewSet, SeriesView, TrendView

router = SimpleRouter(trailing_slash=False)
router.register("events", OutcomeEventViewSet, basename="outcome-event")

urlpatterns = [
    path("trends/<str:metric_type>", TrendView.as_view(), name="outcome-trend"),
    path("series", SeriesView.as_view(), name="outcome-series"),
    path("dashboard", DashboardView.as_view(), name="outcome-dashboard"),
    path("ctrf", CtrfIngestView.as_view(), name="outcome-ctrf"),
    *router.urls,
]
