"""Orders reads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from .models import ApiClient, Order


def orders_with_lines() -> QuerySet[Order]:
    return Order.objects.prefetch_related("lines")


def get_order(*, order_id: uuid.UUID) -> Order | None:
    return orders_with_lines().filter(pk=order_id).first()


def orders_visible_to(*, client: ApiClient) -> QuerySet[Order]:
    """A client sees the orders it placed; a staff client sees every order."""
    orders = orders_with_lines()
    return orders if client.is_staff else orders.filter(api_client=client)


def get_visible_order(*, client: ApiClient, order_id: uuid.UUID) -> Order | None:
    return orders_visible_to(client=client).filter(pk=order_id).first()


@dataclass(frozen=True)
class OrderPosition:
    """Where a page ended, in the list's order (newest first, ties broken by id)."""

    created_at: datetime
    order_id: uuid.UUID


@dataclass(frozen=True)
class OrderPage:
    orders: list[Order]
    next_position: OrderPosition | None


def order_page(
    *,
    client: ApiClient,
    limit: int,
    after: OrderPosition | None = None,
    customer_id: str | None = None,
    status: str | None = None,
    placed_after: datetime | None = None,
    placed_before: datetime | None = None,
) -> OrderPage:
    """One page of the client's orders, newest first. Keyset pagination: a page costs the same two
    queries (orders, their lines) however deep it is and whatever its size, and an order placed
    meanwhile never shifts a later page."""
    orders = orders_visible_to(client=client).order_by("-created_at", "-id")
    if customer_id is not None:
        orders = orders.filter(customer_id=customer_id)
    if status is not None:
        orders = orders.filter(status=status)
    if placed_after is not None:
        orders = orders.filter(created_at__gte=placed_after)
    if placed_before is not None:
        orders = orders.filter(created_at__lt=placed_before)
    if after is not None:
        orders = orders.filter(
            Q(created_at__lt=after.created_at) | Q(created_at=after.created_at, id__lt=after.order_id)
        )
    page = list(orders[: limit + 1])
    if len(page) <= limit:
        return OrderPage(orders=page, next_position=None)
    last = page[limit - 1]
    return OrderPage(orders=page[:limit], next_position=OrderPosition(created_at=last.created_at, order_id=last.id))
