"""Mounted at /v1/operations/ (no trailing slashes, DESIGN §5)."""

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from .views import (
    AutonomyBudgetViewSet,
    BatchCancelView,
    BatchDetailView,
    BatchListView,
    HubStreamView,
    HubView,
    ImprovementIntakeViewSet,
    ProcessControlView,
    ProcessDetailView,
    TraceViewSet,
    WorkflowRunViewSet,
)

router = SimpleRouter(trailing_slash=False)
router.register("traces", TraceViewSet, basename="trace")
router.register("budgets", AutonomyBudgetViewSet, basename="budget")
router.register("improvements", ImprovementIntakeViewSet, basename="improvement")
router.register("workflow-runs", WorkflowRunViewSet, basename="workflow-run")

PROCESS_ID = r"(?P<process_id>[A-Za-z0-9_.:-]{1,100})"

urlpatterns = [
    path("hub", HubView.as_view(), name="operations-hub"),
    path("hub/stream", HubStreamView.as_view(), name="operations-hub-stream"),
    re_path(rf"^processes/{PROCESS_ID}$", ProcessDetailView.as_view(), name="process-detail"),
    re_path(
        rf"^processes/{PROCESS_ID}/control$", ProcessControlView.as_view(), name="process-control"
    ),
    path("batches", BatchListView.as_view(), name="batch-list"),
    re_path(r"^batches/(?P<batch_id>[A-Za-z0-9_.:-]{1,100})$", BatchDetailView.as_view(),
            name="batch-detail"),
    re_path(r"^batches/(?P<batch_id>[A-Za-z0-9_.:-]{1,100})/cancel$",
            BatchCancelView.as_view(), name="batch-cancel"),
    *router.urls,
]
