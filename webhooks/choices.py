"""Event types and delivery states of alerts (DESIGN §8.5)."""

from __future__ import annotations

from django.db import models

__all__ = ["SPEND_THRESHOLDS", "DeliveryState", "DisabledReason", "EventType"]


class EventType(models.TextChoices):
    INTAKE_OPENED = "intake.opened", "An improvement intake was opened by a decline"
    SPEND_THRESHOLD_CROSSED = "spend.threshold_crossed", "Daily spend passed 50, 80 or 100 %"
    BUDGET_PENDING_APPROVAL = "budget.pending_approval", "A budget waits for approval"
    MULTIMODAL_REQUEST_FAILED = "multimodal.request_failed", "A multimodal request failed"
    BENCHMARK_REGRESSED = "benchmark.regressed", "A CTRF test or benchmark declined"
    BATCH_COMPLETED = "batch.completed", "A batch of controls finished"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for its next try (next_attempt_at)
    SENDING = "sending", "Sending"  # a worker is trying it now
    DELIVERED = "delivered", "Delivered"  # a 2xx answered
    FAILED = "failed", "Failed"  # no tries left, 410, or its endpoint was disabled


class DisabledReason(models.TextChoices):
    NONE = "", "—"
    BY_USER = "by_user", "Disabled by a user"
    GONE = "gone", "The receiver answered 410 Gone"
    FAILING = "failing", "Every delivery failed for 5 days"


# Percent of the daily spend limit at which `spend.threshold_crossed` fires, once each per
# UTC day.
SPEND_THRESHOLDS: tuple[int, ...] = (50, 80, 100)
