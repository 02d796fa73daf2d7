from __future__ import annotations

import django_filters

from .choices import Modality, RequestState
from .models import MultimodalRequest, ProviderPrice

__all__ = ["PriceFilterSet", "RequestFilterSet"]


class RequestFilterSet(django_filters.FilterSet):
    modality = django_filters.ChoiceFilter(choices=Modality.choices)
    state = django_filters.ChoiceFilter(choices=RequestState.choices)

    class Meta:
        model = MultimodalRequest
        fields = ["modality", "state"]


class PriceFilterSet(django_filters.FilterSet):
    class Meta:
        model = ProviderPrice
        fields = ["provider", "model"]
