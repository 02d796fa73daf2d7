"""Declines open improvement intakes (DESIGN §5.3, issue 8).

After events commit, each (metric, domain) trend they touched is evaluated once — per domain,
never the "all" aggregate, so one decline cannot open two intakes. Every evaluation is stored
as the key's trend snapshot (the dashboard's per-domain table reads them). A trend that is
now `declining` over at least MIN_VALUES values opens an intake through operations' public
service, which admits exactly one open intake per declining key (a partial unique constraint).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from django.db import transaction

from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant

from .choices import TrendDirection
from .selectors import event_type_trend_stats_many, trend_stats_many
from .services import trend_snapshots_save
from .signals import DeclineOpened, decline_opened
from .trends import TrendStats

__all__ = ["MIN_VALUES", "decline_scope", "declines_evaluate", "urgency_for"]

logger = logging.getLogger("agent33.outcomes")

MIN_VALUES = 4


def urgency_for(change_pct: float) -> str:
    """Worse than -20 % is high, worse than -10 % medium, else low."""
    if change_pct < -20:
        return "high"
    if change_pct < -10:
        return "medium"
    return "low"


_TITLE_LENGTH = 300  # ImprovementIntake.title
_SCOPE_LENGTH = 300 - 32 - 1  # the intake's decline key is "<metric>:<scope>", 300 at most


def decline_scope(domain: str, event_type: str | None = None) -> str:
    """What one open intake per decline is kept for: the domain, or for a test (an event
    type) `<domain> > <test>`, cut with a digest of the whole where the key would pass 300
    characters, so two long test names stay two declines."""
    if not event_type:
        return domain
    scope = f"{domain} > {event_type}"
    if len(scope) <= _SCOPE_LENGTH:
        return scope
    digest = hashlib.sha256(scope.encode("utf-8")).hexdigest()[:12]
    return f"{scope[: _SCOPE_LENGTH - 13]}~{digest}"


def _describe(
    metric_type: str, domain: str, event_type: str | None, stats: TrendStats
) -> tuple[str, str]:
    if event_type:
        title = f"{metric_type} declining: {event_type} in {domain}"
        what = f"test '{event_type}' of domain '{domain}'"
        over = f"latest {stats.sample_size} runs"
    else:
        title = f"{metric_type} declining in {domain}"
        what = f"domain '{domain}'"
        over = f"latest {stats.sample_size} events"
    summary = (
        f"The {metric_type} trend of {what} is declining over its {over}: previous average "
        f"{stats.previous_avg:.4g}, current average {stats.current_avg:.4g}, change "
        f"{stats.change_pct:+.1f} % (positive is better)."
    )
    if len(title) > _TITLE_LENGTH:
        title = title[: _TITLE_LENGTH - 1] + "…"
    return title, summary


def declines_evaluate(*, tenant: Tenant, keys: Iterable[tuple[str, ...]]) -> list[str]:
    """Evaluate each touched key once and return the ids of the intakes opened.

    A (metric_type, domain) key is a domain's trend: stored as its snapshot, and a decline
    opens an intake for the domain. A (metric_type, domain, event_type) key is one test's
    trend (CTRF): a decline opens an intake naming the test, and its domain's trend is
    evaluated for the snapshot only, so a failing test opens one intake, not two."""
    from operations.services import intake_open_for_decline  # the apps' public seam

    keys = set(keys)
    domain_keys = {key for key in keys if len(key) == 2}
    test_keys = sorted(key for key in keys if len(key) == 3)
    snapshot_only = {key[:2] for key in test_keys} - domain_keys
    opened: list[str] = []
    with tenant_scope(tenant):
        trends = trend_stats_many(tenant=tenant, keys=sorted(domain_keys | snapshot_only))
        trend_snapshots_save(tenant=tenant, trends=trends)
        candidates = [((m, d, None), stats) for (m, d), stats in trends.items()
                      if (m, d) in domain_keys]
        candidates += [
            ((m, d, e), stats)
            for (m, d, e), stats in event_type_trend_stats_many(
                tenant=tenant, keys=test_keys).items()
        ]
        for (metric_type, domain, event_type), stats in candidates:
            if stats.direction != TrendDirection.DECLINING or stats.sample_size < MIN_VALUES:
                continue
            title, summary = _describe(metric_type, domain, event_type, stats)
            intake, created = intake_open_for_decline(
                tenant=tenant,
                metric_type=metric_type,
                domain=decline_scope(domain, event_type),
                title=title,
                summary=summary,
                urgency=urgency_for(stats.change_pct),
            )
            if created:
                logger.info("Opened %s for declining %s/%s", intake.pk, metric_type,
                            decline_scope(domain, event_type))
                opened.append(intake.pk)
                _announce_after_commit(DeclineOpened(
                    tenant_id=tenant.pk, intake_id=intake.pk, title=intake.title,
                    metric_type=metric_type, domain=domain, event_type=event_type,
                    previous_avg=stats.previous_avg, current_avg=stats.current_avg,
                    change_pct=stats.change_pct, sample_size=stats.sample_size,
                    urgency=intake.urgency))
    return opened


def _announce_after_commit(decline: DeclineOpened) -> None:
    """`decline_opened` once the intake is committed; a listener's error is logged, never
    raised into whatever committed it."""

    def send() -> None:
        for _receiver, result in decline_opened.send_robust(sender=DeclineOpened,
                                                             decline=decline):
            if isinstance(result, Exception):
                logger.error("decline_opened listener failed for %s", decline.intake_id,
                             exc_info=result)

    transaction.on_commit(send, robust=True)
