"""Operations' series for GET /metrics (registered in OperationsConfig.ready).

Every figure is read from counts the database keeps as rows change (ProcessCount,
ControlCount: agent33.observability.row_counts) or from the partial index of the intakes
declines opened, so a scrape costs the same with a thousand processes or millions.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent33.observability.row_counts import RowCounter

from .choices import CONTROL_ACTIONS, ProcessType
from .models import (
    AutonomyBudget,
    ControlCount,
    ImprovementIntake,
    ProcessCount,
    StatusChange,
    Trace,
    WorkflowRun,
)

__all__ = ["PROCESSES", "ROW_COUNTERS", "collect"]

PROCESSES = "agent33_processes"

ROW_COUNTERS = [
    *(
        RowCounter(name=f"process_{model._meta.model_name}", source=model,
                   counts=ProcessCount, key={"status": "status"},
                   constants={"process_type": process_type.value})
        for model, process_type in (
            (Trace, ProcessType.TRACE),
            (AutonomyBudget, ProcessType.AUTONOMY_BUDGET),
            (ImprovementIntake, ProcessType.IMPROVEMENT_INTAKE),
            (WorkflowRun, ProcessType.WORKFLOW),
        )
    ),
    RowCounter(name="control_action", source=StatusChange, counts=ControlCount,
               key={"process_type": "process_type", "action": "action"}),
]


def collect() -> Iterator[Metric]:
    processes = GaugeMetricFamily(
        PROCESSES, "Processes by type and status, every tenant.", labels=["type", "status"]
    )
    rows = (ProcessCount.all_tenants.values_list("process_type", "status")
            .annotate(total=Sum("count")).order_by("process_type", "status"))
    for process_type, status, total in rows:
        processes.add_metric([process_type, status], total)
    yield processes

    controls = CounterMetricFamily(
        "agent33_controls_applied", "Operator controls applied, by process type and action.",
        labels=["type", "action"],
    )
    # The history counts every change by action; an operator's control-equivalent moves (on
    # any path) are the ones named after a control.
    rows = (ControlCount.all_tenants.filter(action__in=CONTROL_ACTIONS)
            .values_list("process_type", "action")
            .annotate(total=Sum("count")).order_by("process_type", "action"))
    for process_type, action, total in rows:
        controls.add_metric([process_type, action], total)
    yield controls

    declines = CounterMetricFamily(
        "agent33_intakes_opened_by_declines",
        "Improvement intakes opened because an outcome trend declined.",
    )
    declines.add_metric([], ImprovementIntake.all_tenants.exclude(decline_key="").count())
    yield declines
