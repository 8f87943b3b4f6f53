"""Inventory writes. Stock rows are locked (select_for_update, ordered by pk) before they change, so
concurrent reservations on PostgreSQL serialise per product and never oversell; the check constraint
reserved <= on_hand is the last line of defence."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils.text import Truncator

from eventbus import event_types
from eventbus.event_types import ReservationFailure, StockChange

from .models import STOCK_ON_HAND_LIMIT, Product, Reservation, ReservationLine, StockItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestedItem:
    product_id: str
    quantity: int


class StockError(ValueError):
    pass


@dataclass(frozen=True)
class _HeldStock:
    """The reservations and stock rows a receive's batch locked up front (hold_stock), which its
    handlers' services use rather than lock them again order by order. The instances are shared: each
    service's change to one is seen by the next, as it would be after a commit."""

    order_ids: frozenset[uuid.UUID]  # whose reservations were looked for, found or not
    reservations: dict[uuid.UUID, Reservation]
    lines: dict[uuid.UUID, list[tuple[int, int]]]  # order id: (product id, quantity) of its reservation
    skus: frozenset[str]  # asked for, whether or not a product has the SKU
    by_product: dict[int, StockItem]


_held_stock: ContextVar[_HeldStock | None] = ContextVar("held_stock", default=None)
_HOLDING_STOCK = (Reservation.Status.RESERVED, Reservation.Status.COMMITTED)


@contextmanager
def hold_stock(*, order_ids: Iterable[uuid.UUID], skus: Iterable[str]) -> Iterator[None]:
    """Lock the reservations of `order_ids` (in order-id order), read the lines of those that hold
    stock, then lock, in one query and in pk order, the stock rows of `skus` and of those lines (with
    their products, read but not locked, so a receive never holds up an edit of a product's name), for
    the services called inside: a receive's orders share products, so locking each order's rows in
    turn would let two workers' batches take them in opposite orders and deadlock. Inside a
    transaction. A row it did not lock (a reservation made by another worker between the reads and
    the lock) is locked by the service as usual."""
    order_ids, skus = frozenset(order_ids), frozenset(skus)
    reservations = {
        reservation.order_id: reservation
        for reservation in Reservation.objects.select_for_update().filter(order_id__in=order_ids).order_by("order_id")
    }
    lines: dict[uuid.UUID, list[tuple[int, int]]] = {}
    holding = {r.pk: r.order_id for r in reservations.values() if r.status in _HOLDING_STOCK}
    if holding:
        for reservation_id, product_id, quantity in ReservationLine.objects.filter(
            reservation_id__in=holding
        ).values_list("reservation_id", "product_id", "quantity"):
            lines.setdefault(holding[reservation_id], []).append((product_id, quantity))
    products = {product_id for order_lines in lines.values() for product_id, _ in order_lines}
    rows = list(
        StockItem.objects.select_for_update(of=("self",))
        .select_related("product")
        .filter(Q(product__sku__in=skus) | Q(product_id__in=products))
        .order_by("pk")
    )
    held = _HeldStock(
        order_ids=order_ids,
        reservations=reservations,
        lines=lines,
        skus=skus,
        by_product={row.product_id: row for row in rows},
    )
    token = _held_stock.set(held)
    try:
        yield
    finally:
        _held_stock.reset(token)


def _locked_reservation(order_id: uuid.UUID, *, trust_absence: bool = False) -> Reservation | None:
    """The order's reservation, locked: the receive's own instance if the receive locked it. A
    reservation the receive looked for and did not find may have been made since by another worker;
    with `trust_absence` (a caller about to create one, whose INSERT would then fail on the unique
    order id, to be retried) the receive's answer stands, else it is looked for again."""
    held = _held_stock.get()
    if held is not None and order_id in held.order_ids:
        found = held.reservations.get(order_id)
        if found is not None or trust_absence:
            return found
    return Reservation.objects.select_for_update().filter(order_id=order_id).first()


def _hold(reservation: Reservation) -> Reservation:
    """A reservation made inside hold_stock, kept as the receive's instance of it."""
    held = _held_stock.get()
    if held is not None and reservation.order_id in held.order_ids:
        held.reservations[reservation.order_id] = reservation
    return reservation


def _as_held(row: StockItem) -> StockItem:
    """A row locked inside hold_stock, as the one instance of it the receive's services share: a row
    changed through two instances would keep only the last one's change."""
    held = _held_stock.get()
    return row if held is None else held.by_product.setdefault(row.product_id, row)


def _locked_stock(skus: list[str]) -> dict[str, StockItem]:
    held = _held_stock.get()
    if held is not None and held.skus.issuperset(skus):
        by_sku = {row.product.sku: row for row in held.by_product.values()}
        return {sku: by_sku[sku] for sku in skus if sku in by_sku}
    rows = (
        StockItem.objects.select_for_update(of=("self",))
        .select_related("product")
        .filter(product__sku__in=skus)
        .order_by("pk")
    )
    return {row.product.sku: _as_held(row) for row in rows}


def _locked_stock_of(reservation: Reservation) -> list[tuple[StockItem, int]]:
    """The stock rows of the reservation's lines, locked in pk order as _locked_stock locks them, each
    with its product and its line's quantity: one query, where reading the lines and then locking
    their stock took two (none if the receive's batch holds them). Every line's product has a stock
    row: one is opened with each product, and neither can be deleted while a line names the product."""
    held = _held_stock.get()
    lines = held.lines.get(reservation.order_id) if held is not None else None
    if lines is not None and all(product_id in held.by_product for product_id, _ in lines):
        return sorted(((held.by_product[product_id], quantity) for product_id, quantity in lines), key=_by_pk)
    line = ReservationLine.objects.filter(reservation=reservation, product=OuterRef("product"))
    rows = (
        StockItem.objects.select_for_update(of=("self",))
        .select_related("product")
        .filter(product__in=reservation.lines.values("product"))
        .annotate(line_quantity=Subquery(line.values("quantity")))
        .order_by("pk")
    )
    return [(_as_held(row), row.line_quantity) for row in rows]


def _by_pk(pair: tuple[StockItem, int]) -> int:
    return pair[0].pk


def _stock_updated(
    item: StockItem, *, change: int, reason_code: StockChange, order_id: uuid.UUID | None = None
) -> None:
    data = {
        "productId": item.product.sku,
        "onHand": item.on_hand,
        "reserved": item.reserved,
        "available": item.available,
        "change": change,
        "reasonCode": reason_code,
    }
    if order_id:
        data["orderId"] = str(order_id)
    item.record_event(event_types.STOCK_UPDATED, data, correlation_id=item.product.sku)


def _alert_if_crossed_low_threshold(item: StockItem, *, available_before: int) -> None:
    # Alert on the crossing only, not on every sale below the threshold.
    if available_before > item.low_stock_threshold >= item.available:
        item.record_event(
            event_types.LOW_STOCK_ALERT,
            {
                "productId": item.product.sku,
                "productName": item.product.name,
                "available": item.available,
                "threshold": item.low_stock_threshold,
            },
            correlation_id=item.product.sku,
        )


# Handler-path services open no savepoint (docs/architecture.md, "Savepoints").
@transaction.atomic(savepoint=False)
def reserve_stock(*, order_id: uuid.UUID, items: list[RequestedItem]) -> Reservation:
    """Reserve every item or none. Idempotent per order: a second call returns the first outcome."""
    existing = _locked_reservation(order_id, trust_absence=True)
    if existing is not None:
        return existing
    items = _merge_by_product(items)
    stock = _locked_stock([item.product_id for item in items])
    reservation = _hold(Reservation(order_id=order_id))
    for item in items:
        row = stock.get(item.product_id)
        if row is None or not row.product.active:
            return _fail(
                reservation,
                item,
                available=0,
                code=ReservationFailure.PRODUCT_NOT_FOUND,
                reason=f"Unknown product {item.product_id}",
            )
        if row.available < item.quantity:
            return _fail(
                reservation,
                item,
                available=row.available,
                code=ReservationFailure.INSUFFICIENT_STOCK,
                reason=(
                    f"Only {row.available} of {row.product.name} ({item.product_id}) available, "
                    f"{item.quantity} requested"
                ),
            )
    for item in sorted(items, key=lambda i: stock[i.product_id].pk):
        row = stock[item.product_id]
        available_before = row.available
        row.reserved += item.quantity
        _alert_if_crossed_low_threshold(row, available_before=available_before)
        row.save(update_fields=["reserved", "updated_at"])
    reservation.status = Reservation.Status.RESERVED
    reservation.record_event(
        event_types.INVENTORY_RESERVED,
        {"orderId": str(order_id), "items": [{"productId": i.product_id, "quantity": i.quantity} for i in items]},
        correlation_id=order_id,
    )
    reservation.save()
    ReservationLine.objects.bulk_create(
        ReservationLine(reservation=reservation, product=stock[i.product_id].product, quantity=i.quantity)
        for i in items
    )
    return reservation


def _merge_by_product(items: list[RequestedItem]) -> list[RequestedItem]:
    quantities: dict[str, int] = {}
    for item in items:
        quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
    return [RequestedItem(product_id=sku, quantity=quantity) for sku, quantity in quantities.items()]


def _fail(
    reservation: Reservation, item: RequestedItem, *, available: int, code: ReservationFailure, reason: str
) -> Reservation:
    # The reason names the product, whose name and SKU may be long: cut to fit the column, or the
    # failure itself would fail to save and the order would never hear why.
    reason = Truncator(reason).chars(Reservation._meta.get_field("failure_reason").max_length)
    reservation.status = Reservation.Status.FAILED
    reservation.failure_reason_code = code
    reservation.failure_reason = reason
    reservation.record_event(
        event_types.RESERVATION_FAILED,
        {
            "orderId": str(reservation.order_id),
            "reasonCode": code,
            "productId": item.product_id,
            "requested": item.quantity,
            "available": available,
            "reason": reason,
        },
        correlation_id=reservation.order_id,
    )
    reservation.save()
    logger.info("reservation failed for order %s: %s", reservation.order_id, reason)
    return reservation


@transaction.atomic(savepoint=False)
def release_stock(*, order_id: uuid.UUID) -> Reservation:
    """Give back what an order holds: reserved stock returns to the pool, committed stock to on_hand.

    A cancel that arrives before the order was seen leaves a VOIDED tombstone, so the late
    Order Placed reserves nothing.
    """
    reservation = _locked_reservation(order_id)
    if reservation is None:
        reservation, _ = Reservation.objects.select_for_update().get_or_create(
            order_id=order_id, defaults={"status": Reservation.Status.VOIDED}
        )
        _hold(reservation)
    if reservation.status not in _HOLDING_STOCK:
        return reservation
    was_committed = reservation.status == Reservation.Status.COMMITTED
    reservation.transition_to(Reservation.Status.RETURNED if was_committed else Reservation.Status.RELEASED)
    stock = _locked_stock_of(reservation)
    for row, quantity in stock:
        if was_committed:
            row.on_hand += quantity
            _stock_updated(row, change=quantity, reason_code=StockChange.RETURN, order_id=order_id)
        else:
            row.reserved -= quantity
        row.save(update_fields=["on_hand", "reserved", "updated_at"])
    reservation.record_event(
        event_types.INVENTORY_RELEASED,
        {
            "orderId": str(order_id),
            "items": [{"productId": row.product.sku, "quantity": quantity} for row, quantity in stock],
            "committed": was_committed,
        },
        correlation_id=order_id,
    )
    reservation.save()
    return reservation


@transaction.atomic(savepoint=False)
def commit_stock(*, order_id: uuid.UUID) -> Reservation | None:
    """The order is confirmed: its reserved units leave the warehouse (on_hand and reserved both drop)."""
    reservation = _locked_reservation(order_id)
    if reservation is None or reservation.status != Reservation.Status.RESERVED:
        return reservation
    reservation.transition_to(Reservation.Status.COMMITTED)
    for row, quantity in _locked_stock_of(reservation):
        row.on_hand -= quantity
        row.reserved -= quantity
        _stock_updated(row, change=-quantity, reason_code=StockChange.SALE, order_id=order_id)
        row.save(update_fields=["on_hand", "reserved", "updated_at"])
    reservation.save()
    return reservation


@transaction.atomic
def restock(*, product_ids: list[int], quantity: int) -> list[StockItem]:
    if quantity < 1:
        raise StockError("Restock quantity must be at least 1.")
    # The stock rows alone are locked, not their products: a product's change form saves the product
    # row and then locks its stock row (set_low_stock_threshold), and the two would deadlock.
    rows = list(
        StockItem.objects.select_for_update(of=("self",))
        .select_related("product")
        .filter(product_id__in=product_ids)
        .order_by("pk")
    )
    # Checked before any row changes, so that a refused restock changes no product.
    too_full = [row.product.sku for row in rows if row.on_hand + quantity > STOCK_ON_HAND_LIMIT]
    if too_full:
        raise StockError(
            f"Restocking {quantity} would take {', '.join(too_full)} past {STOCK_ON_HAND_LIMIT} units on hand, "
            "the most a restock may bring."
        )
    for row in rows:
        row.on_hand += quantity
        _stock_updated(row, change=quantity, reason_code=StockChange.RESTOCK)
        row.save(update_fields=["on_hand", "updated_at"])
    return rows


@transaction.atomic
def set_low_stock_threshold(*, product_id: int, threshold: int) -> StockItem:
    """Change the threshold alone, under the row lock: the counts are the consumers', and a form that
    read them earlier must not write them back over a reservation made since."""
    item = StockItem.objects.select_for_update().get(product_id=product_id)
    item.low_stock_threshold = threshold
    item.save(update_fields=["low_stock_threshold", "updated_at"])
    return item


@transaction.atomic
def open_stock(*, product: Product, on_hand: int, low_stock_threshold: int = 10) -> StockItem:
    """Give a new product its stock record, publishing the opening balance."""
    item = StockItem(product=product, on_hand=on_hand, low_stock_threshold=low_stock_threshold)
    _stock_updated(item, change=on_hand, reason_code=StockChange.RESTOCK)
    item.save()
    return item


DEMO_CATALOGUE = [
    # sku, name, price, on hand (the exercise's three products and stock, then a few more)
    ("prod-1", "Laptop", Decimal("999.99"), 50),
    ("prod-2", "Mouse", Decimal("29.99"), 100),
    ("prod-3", "Keyboard", Decimal("79.99"), 5),
    ("prod-4", "Monitor", Decimal("249.00"), 30),
    ("prod-5", "USB-C Hub", Decimal("49.50"), 60),
    ("prod-6", "Webcam", Decimal("89.00"), 20),
]


@transaction.atomic
def load_demo_catalogue() -> list[Product]:
    """Create the demo products that are missing. Existing products and their stock are left alone."""
    created = []
    for sku, name, price, on_hand in DEMO_CATALOGUE:
        product, is_new = Product.objects.get_or_create(sku=sku, defaults={"name": name, "price": price})
        if is_new:
            open_stock(product=product, on_hand=on_hand)
            created.append(product)
    return created
