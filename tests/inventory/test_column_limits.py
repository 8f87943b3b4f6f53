"""Values at the edges of what the columns hold, on both databases (PostgreSQL enforces a varchar's
length and an integer's range; SQLite does neither). Found by an adversarial review (2026-11-27)."""

from __future__ import annotations

import uuid

import pytest

from eventbus.consuming import handle_batch
from eventbus.event_types import ORDER_CANCELLED, ORDER_CONFIRMED, ORDER_PLACED
from eventbus.models import OutboxEvent
from inventory import services
from inventory.models import STOCK_ON_HAND_LIMIT, Reservation, StockItem
from tests.events import SAMPLE_DATA, envelope, order_placed_data
from tests.factories import ProductFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]


def deliver(detail_type, data: dict) -> None:
    [outcome] = handle_batch(service="inventory", bodies=[envelope(detail_type, data)])
    assert outcome.result == "processed", outcome.note


def test_a_reservation_that_fails_on_a_long_named_product_says_why_within_its_column():
    sku = "s" * 64  # the longest SKU and name the admin accepts
    ProductFactory(sku=sku, name="N" * 200, stock__on_hand=10)
    order_id = uuid.uuid4()

    deliver(ORDER_PLACED, order_placed_data(order_id, sku=sku, quantity=11))

    reservation = Reservation.objects.get(order_id=order_id)
    assert reservation.status == Reservation.Status.FAILED
    assert len(reservation.failure_reason) == 300 and reservation.failure_reason.startswith("Only 10 of NNN")
    [failed] = OutboxEvent.objects.filter(detail_type="Reservation Failed")
    assert failed.detail["data"]["reason"] == reservation.failure_reason
    assert StockItem.objects.get(product__sku=sku).reserved == 0


def test_stock_given_back_fits_when_restocks_have_reached_the_on_hand_limit():
    product = ProductFactory(sku="full", stock__on_hand=STOCK_ON_HAND_LIMIT)
    order_id = uuid.uuid4()
    deliver(ORDER_PLACED, order_placed_data(order_id, sku="full", quantity=1))
    deliver(ORDER_CONFIRMED, {**SAMPLE_DATA["Order Confirmed"], "orderId": str(order_id)})
    services.restock(product_ids=[product.pk], quantity=1)  # back to the limit

    deliver(ORDER_CANCELLED, {**SAMPLE_DATA["Order Cancelled"], "orderId": str(order_id)})

    assert Reservation.objects.get(order_id=order_id).status == Reservation.Status.RETURNED
    assert StockItem.objects.get(product__sku="full").on_hand == STOCK_ON_HAND_LIMIT + 1
