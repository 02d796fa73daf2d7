"""The platform's price table (DESIGN §7.4): reading a price and changing one.

`ProviderPrice` is not tenant-owned. Who may change it is the caller's business: the API
lets only all-tenants tokens with multimodal:admin through, the admin only staff with the
model's change permission. Every change bumps the row's `version`, so results costed with
an older price keep naming it exactly.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from agent33.errors import InvalidInput, NotFound

from ..models import ProviderPrice
from ..pricing import MAX_PRICE_DECIMALS, MAX_UNIT_PRICE, UNITS, format_usd, parse_usd
from ..providers.registry import provider_names

__all__ = ["MODEL_NAME_RE", "check_price_key", "clean_usd_per_unit", "price_for", "price_set"]

logger = logging.getLogger("agent33.multimodal")

MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")


def price_for(provider: str, model: str) -> ProviderPrice | None:
    return ProviderPrice.objects.filter(provider=provider, model=model).first()


def clean_usd_per_unit(value: Any) -> dict[str, str]:
    """`{unit: "decimal"}` with known units and plain non-negative decimals of at most 12
    places (`parse_usd`), normalised ("0.0000150" → "0.000015"). InvalidInput names every
    bad unit."""
    if not isinstance(value, dict) or not value:
        raise InvalidInput(
            f"usd_per_unit must be an object of unit → decimal string; units: "
            f"{', '.join(UNITS)}.", field="usd_per_unit")
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, str] = {}
    for unit, raw in value.items():
        field = f"usd_per_unit.{unit}"
        if unit not in UNITS:
            errors[field] = [f"unknown unit; known: {', '.join(UNITS)}"]
            continue
        try:
            amount = parse_usd(raw, max_decimals=MAX_PRICE_DECIMALS)
        except ValueError as exc:
            errors[field] = [str(exc)]
            continue
        if amount > MAX_UNIT_PRICE:
            errors[field] = [f"is over {MAX_UNIT_PRICE} USD per unit"]
            continue
        cleaned[unit] = format_usd(amount)
    if errors:
        first, messages = next(iter(errors.items()))
        raise InvalidInput(f"{first}: {messages[0]}", field=first, errors=errors)
    return cleaned


def check_price_key(provider: str, model: str) -> None:
    """A known provider (404 `unknown_provider` otherwise) and a well-formed model name."""
    if provider not in provider_names():
        raise NotFound(f"Unknown provider {provider[:64]!r}; known: "
                       f"{', '.join(provider_names())}.", code="unknown_provider")
    if not MODEL_NAME_RE.fullmatch(model):
        raise InvalidInput(
            "model must be 1-100 letters, digits and . _ : / - (starting with a letter or "
            "digit).", field="model")


def price_set(*, provider: str, model: str, usd_per_unit: Any, actor: str) -> ProviderPrice:
    """Create or replace the price of `provider`'s `model`. The row's version goes up by one
    on every change."""
    check_price_key(provider, model)
    cleaned = clean_usd_per_unit(usd_per_unit)
    now = timezone.now()
    with transaction.atomic():
        changed = ProviderPrice.objects.filter(provider=provider, model=model).update(
            usd_per_unit=cleaned, version=F("version") + 1, updated_at=now, updated_by=actor,
        )
        if not changed:
            try:
                with transaction.atomic():
                    ProviderPrice.objects.create(provider=provider, model=model,
                                                 usd_per_unit=cleaned, updated_at=now,
                                                 updated_by=actor)
            except IntegrityError:  # created concurrently: this change goes on top of it
                return price_set(provider=provider, model=model, usd_per_unit=cleaned,
                                 actor=actor)
    logger.info("price of %s/%s set to %s by %s", provider, model, cleaned, actor)
    return ProviderPrice.objects.get(provider=provider, model=model)
