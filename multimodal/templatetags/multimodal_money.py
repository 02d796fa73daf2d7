"""`{{ amount|usd }}`: a Decimal (or nano-dollar int) as "$12.50" on staff pages."""

from django import template

from ..pricing import format_usd

register = template.Library()


@register.filter
def usd(amount) -> str:
    text = format_usd(amount)
    return "\u2013" if text is None else f"${text}"
