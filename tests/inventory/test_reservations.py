from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from eventbus.models import OutboxEvent
from inventory import services
from inventory.models import Reservation, StockItem
from tests.factories import ProductFactory

# On both databases: stock rows are locked with SQL (FOR UPDATE OF) that SQLite ignores.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]


def item(sku: str, quantity: int) -> services.RequestedItem:
    return services.RequestedItem(product_id=sku, quantity=quantity)


def stock(sku: str) -> StockItem:
    return StockItem.objects.get(product__sku=sku)


def events(detail_type: str) -> list[dict]:
    return [row.detail["data"] for row in OutboxEvent.objects.filter(detail_type=detail_type).order_by("created_at")]


def test_reserving_holds_the_stock_and_publishes_inventory_reserved(catalogue):
    order_id = uuid.uuid4()
    reservation = services.reserve_stock(order_id=order_id, items=[item("prod-1", 1), item("prod-2", 2)])

    assert reservation.status == Reservation.Status.RESERVED
    assert (stock("prod-1").reserved, stock("prod-1").available) == (1, 49)
    assert stock("prod-2").reserved == 2
    assert events("Inventory Reserved") == [
        {
            "orderId": str(order_id),
            "items": [{"productId": "prod-1", "quantity": 1}, {"productId": "prod-2", "quantity": 2}],
        }
    ]


def test_reservation_is_all_or_nothing(catalogue):
    order_id = uuid.uuid4()
    reservation = services.reserve_stock(order_id=order_id, items=[item("prod-1", 1), item("prod-3", 6)])

    assert reservation.status == Reservation.Status.FAILED
    assert stock("prod-1").reserved == 0
    assert stock("prod-3").reserved == 0
    assert not events("Inventory Reserved")
    [failed] = events("Reservation Failed")
    assert failed["reasonCode"] == "INSUFFICIENT_STOCK"
    assert (failed["productId"], failed["requested"], failed["available"]) == ("prod-3", 6, 5)
    assert "Only 5 of Keyboard" in failed["reason"]


def test_an_unknown_product_fails_the_reservation(catalogue):
    services.reserve_stock(order_id=uuid.uuid4(), items=[item("prod-404", 1)])
    [failed] = events("Reservation Failed")
    assert (failed["reasonCode"], failed["productId"], failed["available"]) == ("PRODUCT_NOT_FOUND", "prod-404", 0)


def test_reserving_is_idempotent_per_order(catalogue):
    order_id = uuid.uuid4()
    services.reserve_stock(order_id=order_id, items=[item("prod-1", 3)])
    services.reserve_stock(order_id=order_id, items=[item("prod-1", 3)])
    assert stock("prod-1").reserved == 3
    assert len(events("Inventory Reserved")) == 1


def test_the_same_product_twice_in_one_order_is_reserved_as_one_line(catalogue):
    services.reserve_stock(order_id=uuid.uuid4(), items=[item("prod-3", 3), item("prod-3", 3)])
    assert stock("prod-3").reserved == 0  # 6 of 5: refused as a whole, never half-reserved
    assert events("Reservation Failed")[0]["requested"] == 6


def test_low_stock_is_alerted_when_available_crosses_the_threshold_not_on_every_sale(db):
    ProductFactory(sku="widget", name="Widget", stock__on_hand=15, stock__low_stock_threshold=10)
    for quantity in (3, 3, 1):  # available 12, then 9 (crossed), then 8 (still below)
        services.reserve_stock(order_id=uuid.uuid4(), items=[item("widget", quantity)])
    assert events("Low Stock Alert") == [
        {"productId": "widget", "productName": "Widget", "available": 9, "threshold": 10}
    ]


def test_stock_already_below_the_threshold_raises_no_alert(catalogue):
    services.reserve_stock(order_id=uuid.uuid4(), items=[item("prod-3", 1)])  # Keyboard: 5 on hand, threshold 10
    assert not events("Low Stock Alert")


def test_releasing_returns_the_reservation_exactly_once(catalogue):
    order_id = uuid.uuid4()
    services.reserve_stock(order_id=order_id, items=[item("prod-2", 4)])
    services.release_stock(order_id=order_id)
    services.release_stock(order_id=order_id)

    assert stock("prod-2").reserved == 0
    assert Reservation.objects.get(order_id=order_id).status == Reservation.Status.RELEASED
    assert events("Inventory Released") == [
        {"orderId": str(order_id), "items": [{"productId": "prod-2", "quantity": 4}], "committed": False}
    ]


def test_committing_ships_the_units(catalogue):
    order_id = uuid.uuid4()
    services.reserve_stock(order_id=order_id, items=[item("prod-1", 2)])
    services.commit_stock(order_id=order_id)
    services.commit_stock(order_id=order_id)

    assert (stock("prod-1").on_hand, stock("prod-1").reserved) == (48, 0)
    sale = [e for e in events("Stock Updated") if e["reasonCode"] == "SALE"]
    assert sale == [
        {
            "productId": "prod-1",
            "onHand": 48,
            "reserved": 0,
            "available": 48,
            "change": -2,
            "reasonCode": "SALE",
            "orderId": str(order_id),
        }
    ]


def test_cancelling_after_commit_returns_the_stock_to_on_hand(catalogue):
    order_id = uuid.uuid4()
    services.reserve_stock(order_id=order_id, items=[item("prod-1", 2)])
    services.commit_stock(order_id=order_id)
    services.release_stock(order_id=order_id)

    assert (stock("prod-1").on_hand, stock("prod-1").reserved) == (50, 0)
    assert Reservation.objects.get(order_id=order_id).status == Reservation.Status.RETURNED
    assert events("Inventory Released")[0]["committed"] is True


def test_a_cancel_before_the_reservation_leaves_nothing_reserved(catalogue):
    order_id = uuid.uuid4()
    services.release_stock(order_id=order_id)  # Order Cancelled handled first
    reservation = services.reserve_stock(order_id=order_id, items=[item("prod-1", 5)])  # then Order Placed

    assert reservation.status == Reservation.Status.VOIDED
    assert stock("prod-1").reserved == 0
    assert not events("Inventory Reserved")
    assert not events("Inventory Released")


def test_a_confirmation_after_a_release_commits_nothing(catalogue):
    order_id = uuid.uuid4()
    services.reserve_stock(order_id=order_id, items=[item("prod-1", 2)])
    services.release_stock(order_id=order_id)
    services.commit_stock(order_id=order_id)
    assert (stock("prod-1").on_hand, stock("prod-1").reserved) == (50, 0)


def test_restock_adds_to_on_hand_and_refuses_nonsense(catalogue):
    keyboard = stock("prod-3")
    services.restock(product_ids=[keyboard.product_id], quantity=7)
    assert stock("prod-3").on_hand == 12
    with pytest.raises(services.StockError):
        services.restock(product_ids=[keyboard.product_id], quantity=0)


def test_services_inside_a_receive_holding_stock_change_each_row_through_one_instance(catalogue):
    # The receive held prod-1 for a reservation, but read the lines before the reservation it then
    # releases was made (as a concurrent worker's commit can fall between the two): the release locks
    # prod-1 itself, and must change the receive's own instance of it, or the next reservation would
    # write back a count without the release.
    released = uuid.uuid4()
    services.reserve_stock(order_id=released, items=[item("prod-1", 2)])

    with transaction.atomic(), services.hold_stock(skus=["prod-1"], order_ids=[]):
        services.reserve_stock(order_id=uuid.uuid4(), items=[item("prod-1", 1)])
        services.release_stock(order_id=released)
        services.reserve_stock(order_id=uuid.uuid4(), items=[item("prod-1", 1)])

    assert (stock("prod-1").on_hand, stock("prod-1").reserved) == (50, 2)


def test_a_receive_holding_stock_commits_and_releases_from_the_lines_it_read(catalogue):
    first, second = uuid.uuid4(), uuid.uuid4()
    services.reserve_stock(order_id=first, items=[item("prod-1", 2), item("prod-2", 1)])
    services.reserve_stock(order_id=second, items=[item("prod-2", 3)])

    with transaction.atomic(), services.hold_stock(skus=[], order_ids=[first, second]):
        services.commit_stock(order_id=first)
        services.release_stock(order_id=second)

    assert [(stock(sku).on_hand, stock(sku).reserved) for sku in ("prod-1", "prod-2")] == [(48, 0), (99, 0)]
    assert [(sale["productId"], sale["onHand"], sale["reserved"]) for sale in events("Stock Updated")[-2:]] == [
        ("prod-1", 48, 0),
        ("prod-2", 99, 3),
    ]
    assert events("Inventory Released")[-1]["items"] == [{"productId": "prod-2", "quantity": 3}]


def test_a_cancel_ahead_of_its_order_in_the_same_receive_leaves_nothing_reserved(catalogue):
    order_id = uuid.uuid4()

    with transaction.atomic(), services.hold_stock(order_ids=[order_id], skus=["prod-1"]):
        services.release_stock(order_id=order_id)
        late = services.reserve_stock(order_id=order_id, items=[item("prod-1", 1)])

    assert late.status == Reservation.Status.VOIDED
    assert stock("prod-1").reserved == 0
