"""Non-trivial reads: request lists with their result id, per-provider statistics."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery

from .choices import RequestState
from .models import MultimodalRequest, MultimodalResult

__all__ = [
    "percentile",
    "request_reloaded",
    "request_result",
    "request_stats",
    "requests_with_result_id",
    "results_of",
]

LAST_ERRORS_PER_GROUP = 5


def results_of(mm_request: MultimodalRequest) -> QuerySet[MultimodalResult]:
    """The request's result rows (at most one), in the current tenant scope. Naming the
    request's tenant keeps the (tenant, request) unique index usable under an operator's
    all-tenants scope, where the manager adds no tenant condition of its own."""
    return MultimodalResult.objects.filter(tenant_id=mm_request.tenant_id,
                                           request_id=mm_request.pk)


def _result_id_subquery() -> Subquery:
    return Subquery(
        MultimodalResult.objects.filter(
            tenant_id=OuterRef("tenant_id"), request_id=OuterRef("pk")
        ).values("pk")[:1]
    )


def requests_with_result_id() -> QuerySet[MultimodalRequest]:
    """The requests in the current tenant scope with `result_ref` (the result's id, or
    None) annotated, so lists render `result_id` without a query per row."""
    return MultimodalRequest.objects.annotate(result_ref=_result_id_subquery())


def request_reloaded(mm_request: MultimodalRequest) -> MultimodalRequest:
    """A fresh copy of a request, with `result_ref`, in one query: what create, execute and
    cancel answer with."""
    return requests_with_result_id().get(pk=mm_request.pk)


def request_result(mm_request: MultimodalRequest) -> MultimodalResult | None:
    return results_of(mm_request).select_related("request").first()


def percentile(values: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def request_stats(*, since: datetime, until: datetime | None = None) -> list[dict[str, Any]]:
    """Per modality x provider over requests created in [since, until): counts by state,
    success rate (completed / (completed + failed)), p50/p95 provider latency of completed
    requests, and the last errors. Reads through the tenant-scoped manager."""
    requests = MultimodalRequest.objects.filter(created_at__gte=since)
    if until is not None:
        requests = requests.filter(created_at__lt=until)

    groups: dict[tuple[str, str], dict[str, Any]] = {}

    def group(modality: str, provider: str) -> dict[str, Any]:
        key = (modality, provider)
        if key not in groups:
            groups[key] = {"modality": modality, "provider": provider, "total": 0,
                           **dict.fromkeys(RequestState.values, 0)}
        return groups[key]

    for row in requests.values("modality", "provider", "state").annotate(n=Count("pk")):
        entry = group(row["modality"], row["provider"])
        entry[row["state"]] += row["n"]
        entry["total"] += row["n"]

    latencies: dict[tuple[str, str], list[int]] = defaultdict(list)
    completed = MultimodalResult.objects.filter(
        request__in=requests, state=RequestState.COMPLETED, latency_ms__isnull=False
    ).values_list("request__modality", "request__provider", "latency_ms")
    for modality, provider, latency in completed:
        latencies[(modality, provider)].append(latency)

    errors: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    failed = requests.filter(state=RequestState.FAILED).order_by("-finished_at", "-pk").values(
        "pk", "modality", "provider", "error_message", "finished_at"
    )[:500]
    for row in failed:
        bucket = errors[(row["modality"], row["provider"])]
        if len(bucket) < LAST_ERRORS_PER_GROUP:
            bucket.append({"request_id": row["pk"], "error_message": row["error_message"],
                           "at": row["finished_at"]})

    stats = []
    for key in sorted(groups):
        entry = groups[key]
        decided = entry[RequestState.COMPLETED] + entry[RequestState.FAILED]
        entry["success_rate"] = (
            round(entry[RequestState.COMPLETED] / decided, 4) if decided else None
        )
        entry["p50_latency_ms"] = percentile(latencies[key], 0.50)
        entry["p95_latency_ms"] = percentile(latencies[key], 0.95)
        entry["last_errors"] = errors[key]
        stats.append(entry)
    return stats
