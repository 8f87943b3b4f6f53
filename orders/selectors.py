"""Orders reads."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from .models import Order


def orders_with_lines() -> QuerySet[Order]:
    return Order.objects.prefetch_related("lines")


def get_order(*, order_id: uuid.UUID) -> Order | None:
    return orders_with_lines().filter(pk=order_id).first()
