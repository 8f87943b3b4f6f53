"""Concurrent reservations on PostgreSQL, where row locks are real. `make test` runs these against a
throwaway server (tests/postgres_server.py); SQLite serialises writers and would prove nothing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from django.db import connection
from django.db.models.signals import post_save

from eventbus.consuming import handle_message
from eventbus.event_types import ORDER_PLACED
from eventbus.models import OutboxEvent, ProcessedEvent
from inventory import services
from inventory.models import Product, Reservation, StockItem
from tests.events import envelope, order_placed_data
from tests.factories import ProductFactory
from tests.helpers import change_threshold, restock, run_together, staff_client

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: `make test` runs it against a throwaway server")


def reserve(sku: str, quantity: int = 1, *more: tuple[str, int]) -> Callable[[], str]:
    items = [services.RequestedItem(product_id=sku, quantity=quantity)] + [
        services.RequestedItem(s, q) for s, q in more
    ]
    return lambda: services.reserve_stock(order_id=uuid.uuid4(), items=items).status


def test_concurrent_orders_for_the_last_units_never_oversell():
    ProductFactory(sku="last-units", stock__on_hand=5)

    outcomes = run_together([reserve("last-units") for _ in range(12)])

    assert sorted(outcomes) == ["FAILED"] * 7 + ["RESERVED"] * 5, outcomes
    item = StockItem.objects.get(product__sku="last-units")
    assert (item.on_hand, item.reserved) == (5, 5)


def test_orders_locking_products_in_opposite_orders_do_not_deadlock():
    ProductFactory(sku="a", stock__on_hand=100)
    ProductFactory(sku="b", stock__on_hand=100)

    outcomes = run_together([reserve("a", 1, ("b", 1)) if n % 2 else reserve("b", 1, ("a", 1)) for n in range(10)])

    assert outcomes == ["RESERVED"] * 10, outcomes
    assert [StockItem.objects.get(product__sku=s).reserved for s in ("a", "b")] == [10, 10]


def test_one_message_handled_by_two_workers_at_once_reserves_once():
    ProductFactory(sku="dup", stock__on_hand=10)
    order_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
    data = {**order_placed_data(order_id, sku="dup", quantity=3), "customerId": "c"}
    body = envelope(ORDER_PLACED, data, event_id=event_id)

    outcomes = run_together([lambda: handle_message(service="inventory", body=body).result for _ in range(4)])

    assert sorted(outcomes) == ["duplicate"] * 3 + ["processed"], outcomes
    assert StockItem.objects.get(product__sku="dup").reserved == 3
    assert Reservation.objects.count() == 1
    assert ProcessedEvent.objects.count() == 1


def test_commits_and_releases_of_orders_sharing_products_at_once_keep_the_counts_exact():
    # Each locks its lines' stock rows in one query (FOR UPDATE OF the stock rows alone, in pk order).
    ProductFactory(sku="a", stock__on_hand=100)
    ProductFactory(sku="b", stock__on_hand=100)
    order_ids = [uuid.uuid4() for _ in range(10)]
    for n, order_id in enumerate(order_ids):
        first, second = ("a", "b") if n % 2 else ("b", "a")
        items = [services.RequestedItem(first, 1), services.RequestedItem(second, 2)]
        services.reserve_stock(order_id=order_id, items=items)

    outcomes = run_together(
        [
            (lambda o=order_id: services.commit_stock(order_id=o).status)
            if n % 2
            else (lambda o=order_id: services.release_stock(order_id=o).status)
            for n, order_id in enumerate(order_ids)
        ]
    )

    assert sorted(outcomes) == ["COMMITTED"] * 5 + ["RELEASED"] * 5, outcomes
    counts = {s.product.sku: (s.on_hand, s.reserved) for s in StockItem.objects.select_related("product")}
    # The odd orders (1 of a, 2 of b) were committed; the even ones (1 of b, 2 of a) released.
    assert counts == {"a": (95, 0), "b": (90, 0)}, counts
    released = OutboxEvent.objects.filter(detail_type="Inventory Released")
    assert (
        sorted(
            sorted((item["productId"], item["quantity"]) for item in event.detail["data"]["items"])
            for event in released
        )
        == [[("a", 2), ("b", 1)]] * 5
    )


def test_a_restock_while_another_staff_member_saves_the_product_does_not_deadlock():
    # The change form saves the product row, then locks its stock row to set the threshold; a restock
    # that locked the stock row and then the product row would close the circle (found by a review).
    product = ProductFactory(sku="busy", name="Busy", stock__on_hand=100)
    editor, restocker = staff_client(superuser=True, name="editor"), staff_client(superuser=True, name="restocker")
    for client in (editor, restocker):
        client.raise_request_exception = False  # a deadlock is a 500 to assert on, not an exception
    product_saved = threading.Event()
    editing_thread: list[threading.Thread] = []
    results: dict[str, object] = {}

    def hold_after_the_product_is_saved(sender, instance, **kwargs):
        if threading.current_thread() is not editing_thread[0] or product_saved.is_set():
            return
        product_saved.set()
        # Until the restock is waiting on a lock (the moment a deadlock needs) or is done.
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            while time.monotonic() < deadline and "restock" not in results:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)

    def edit() -> None:
        try:
            results["edit"] = change_threshold(editor, product, 4).status_code
        finally:
            connection.close()

    def add_stock() -> None:
        try:
            product_saved.wait(10)
            results["restock"] = restock(restocker, product, quantity=5).status_code
        finally:
            connection.close()

    post_save.connect(hold_after_the_product_is_saved, sender=Product)
    try:
        threads = [threading.Thread(target=edit), threading.Thread(target=add_stock)]
        editing_thread.append(threads[0])
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        post_save.disconnect(hold_after_the_product_is_saved, sender=Product)

    assert results == {"edit": 302, "restock": 302}
    stock = StockItem.objects.get(product__sku="busy")
    assert (stock.on_hand, stock.low_stock_threshold) == (105, 4)
