"""Money: prices per unit of usage, the cost of a request, and how amounts are stored.

Amounts are `Decimal`s in Python and decimal strings in the API. In the database they are
integers of nano-dollars (1e-9 USD): SQLite keeps decimals as floats, and a spend limit that
five reservations of $0.20 must fill exactly cannot be checked in floats (0.2 x 5 is
1.0000000000000002 there). Integers add up exactly on both databases.

A cost is usage x the price row's `usd_per_unit`, summed over the units the row prices,
computed exactly and rounded once, half up, to a nano-dollar. A unit the row prices that the
usage does not report makes the cost unknown (None): never a guess. Units the row does not
price are free (an offline engine reports the characters it spoke, but is priced by compute
second).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

__all__ = [
    "MAX_PRICE_DECIMALS",
    "MAX_UNIT_PRICE",
    "NANO",
    "UNITS",
    "CostResult",
    "cost_of",
    "format_usd",
    "from_nanos",
    "parse_usd",
    "seconds_to_next_utc_midnight",
    "to_nanos",
    "utc_day",
]

# The units usage is reported in (DESIGN §7.4), and what each one counts.
UNITS: dict[str, str] = {
    "characters": "characters of text synthesised (text-to-speech)",
    "audio_seconds": "seconds of audio transcribed (speech-to-text)",
    "input_tokens": "input (prompt and image) tokens, as the provider reports them",
    "output_tokens": "output tokens, as the provider reports them",
    "compute_seconds": "seconds an offline engine worked on the request",
}
NANO = Decimal("0.000000001")
MAX_PRICE_DECIMALS = 12  # $0.0375 per million tokens is 0.0000000375 (10 places)
MAX_UNIT_PRICE = Decimal("1000")


def to_nanos(amount: Decimal) -> int:
    """Whole nano-dollars, rounded half up (the one rounding step of every amount)."""
    return int((amount / NANO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_nanos_ceiling(amount: Decimal) -> int:
    """Whole nano-dollars, rounded up: for limits and estimates, never in the caller's favour
    by a fraction of a nano-dollar."""
    return int((amount / NANO).quantize(Decimal(1), rounding=ROUND_CEILING))


def from_nanos(nanos: int) -> Decimal:
    return Decimal(nanos) * NANO


def format_usd(amount: Decimal | int | None) -> str | None:
    """A decimal string without exponent or trailing zeros beyond the cents:
    "0.0015", "12.50", "0.00". Ints are nano-dollars."""
    if amount is None:
        return None
    if isinstance(amount, int):
        amount = from_nanos(amount)
    text = f"{amount.normalize():f}"
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


# Money as clients may write it: ASCII digits, optionally a point and more ASCII digits.
# Python's Decimal() reads far more ("١٢" and fullwidth digits as 12, "1_000", "-0", "+1",
# " 1", "1e3", "NaN"), and a limit or a price must mean exactly what its sender saw.
_PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_MAX_DECIMAL_CHARS = 40


def parse_usd(value: Any, *, max_decimals: int = MAX_PRICE_DECIMALS) -> Decimal:
    """A non-negative amount from a plain decimal string ("12.50", "0.000015") or a JSON
    integer. Floats are refused (0.1 as a JSON number is already inexact), and so is every
    other spelling of a number. Raises ValueError with a message for people."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError('must be a decimal string such as "0.000015"')
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return Decimal(value)
    if len(value) > _MAX_DECIMAL_CHARS or not _PLAIN_DECIMAL.fullmatch(value):
        raise ValueError(
            'must be a plain decimal such as "12.50" (ASCII digits 0-9, an optional "." and '
            'decimals; no sign, spaces, exponent, separators or other digits)'
        )
    amount = Decimal(value)
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > max_decimals:
        raise ValueError(f"has more than {max_decimals} decimal places")
    return amount


@dataclass(frozen=True)
class CostResult:
    """`usd` is None when the cost is unknown; `note` then says why."""

    usd: Decimal | None
    note: str = ""

    @property
    def nanos(self) -> int | None:
        return None if self.usd is None else to_nanos(self.usd)


def cost_of(usage: dict[str, Any], usd_per_unit: dict[str, str] | None, *,
            what: str) -> CostResult:
    """usage x price, summed over the units the price row prices. `what` names the provider
    and model for the note."""
    if usd_per_unit is None:
        return CostResult(None, f"no price for {what} in the price table")
    if not usd_per_unit:
        return CostResult(None, f"the price of {what} names no unit")
    total = Decimal(0)
    for unit, price in sorted(usd_per_unit.items()):
        quantity = usage.get(unit)
        if quantity is None or isinstance(quantity, bool):
            return CostResult(None, f"{what} is priced per {unit}, which the usage does not "
                                    "report")
        try:
            total += Decimal(str(quantity)) * Decimal(price)
        except InvalidOperation:
            return CostResult(None, f"usage {unit}={quantity!r} is not a number")
    return CostResult(from_nanos(to_nanos(total)))


def utc_day(moment: datetime) -> Any:
    """The UTC calendar day of `moment` (spend limits count UTC days)."""
    return moment.astimezone(UTC).date()


def seconds_to_next_utc_midnight(now: datetime) -> int:
    """Whole seconds until the next UTC day starts (at least 1): a refused caller's
    Retry-After."""
    now = now.astimezone(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, int((midnight - now).total_seconds() + 0.999999))
