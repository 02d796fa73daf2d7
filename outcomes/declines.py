"""Declines open improvement intakes (DESIGN §5.3, issue 8).

After events commit, each (metric, domain) trend they touched is evaluated once — per domain,
never the "all" aggregate, so one decline cannot open two intakes. Every evaluation is stored
as the key's trend snapshot (the dashboard's per-domain table reads them). A trend that is
now `declining` over at least MIN_VALUES values opens an intake through operations' public
service, which admits exactly one open intake per declining key (a partial unique constraint).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant

from .choices import TrendDirection
from .selectors import trend_stats_many
from .services import trend_snapshots_save
from .trends import TrendStats

__all__ = ["MIN_VALUES", "declines_evaluate", "urgency_for"]

logger = logging.getLogger("agent33.outcomes")

MIN_VALUES = 4


def urgency_for(change_pct: float) -> str:
    """Worse than -20 % is high, worse than -10 % medium, else low."""
    if change_pct < -20:
        return "high"
    if change_pct < -10:
        return "medium"
    return "low"


def _describe(metric_type: str, domain: str, stats: TrendStats) -> tuple[str, str]:
    title = f"{metric_type} declining in {domain}"
    summary = (
        f"The {metric_type} trend of domain '{domain}' is declining over its "
        f"latest {stats.sample_size} events: previous average {stats.previous_avg:.4g}, "
        f"current average {stats.current_avg:.4g}, change {stats.change_pct:+.1f} % "
        "(positive is better)."
    )
    return title, summary


def declines_evaluate(*, tenant: Tenant, keys: Iterable[tuple[str, str]]) -> list[str]:
    """Evaluate each touched (metric_type, domain) once, store the results as the keys' trend
    snapshots, and return the ids of the intakes opened."""
    from operations.services import intake_open_for_decline  # the apps' public seam

    opened: list[str] = []
    with tenant_scope(tenant):
        trends = trend_stats_many(tenant=tenant, keys=sorted(set(keys)))
        trend_snapshots_save(tenant=tenant, trends=trends)
        for (metric_type, domain), stats in trends.items():
            if stats.direction != TrendDirection.DECLINING or stats.sample_size < MIN_VALUES:
                continue
            title, summary = _describe(metric_type, domain, stats)
            intake, created = intake_open_for_decline(
                tenant=tenant,
                metric_type=metric_type,
                domain=domain,
                title=title,
                summary=summary,
                urgency=urgency_for(stats.change_pct),
            )
            if created:
                logger.info("Opened %s for declining %s/%s", intake.pk, metric_type, domain)
                opened.append(intake.pk)
    return opened
