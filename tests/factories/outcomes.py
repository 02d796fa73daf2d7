"""Outcome events are created through the public service, as every other app must, so the
summary counts stay consistent with the events in tests too."""

import factory

from outcomes.choices import MetricType
from outcomes.models import OutcomeEvent
from outcomes.services import event_record
from tests.factories.tenancy import TenantOwnedFactory


class OutcomeEventFactory(TenantOwnedFactory):
    class Meta:
        model = OutcomeEvent

    domain = "support"
    event_type = "task_completed"
    metric_type = MetricType.SUCCESS_RATE.value
    value = factory.Sequence(lambda n: float(n % 10) / 10)
    metadata = factory.LazyFunction(dict)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return event_record(**kwargs)
