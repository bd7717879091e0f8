"""Numbers as the usage page and the staff dashboard write them."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def thousands(value: int | float | None) -> str:
    """14700 -> '14,700': token counts read at a glance."""
    return f"{round(value or 0):,}"


@register.filter
def dollars(value: Decimal | None) -> str:
    """A budget amount to the cent: '$0.90', '$1,250.00'."""
    return f"${Decimal(value or 0):,.2f}"
