from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def usd(value: Decimal | float | None) -> str:
    """US dollars with enough places to show a fraction of a cent: $0.0021, $12.40."""
    amount = Decimal(value or 0)
    if amount == 0:
        return "$0"
    places = 2 if abs(amount) >= 1 else 4
    return f"${amount:,.{places}f}"
