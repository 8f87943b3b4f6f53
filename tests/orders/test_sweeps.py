"""Orders' periodic sweeps: one bad row is logged once, counted and skipped, and never stops the rest."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from eventbus.models import SweepFailure
from orders import services
from orders.models import IdempotencyKey, Order
from tests.factories import PlaceOrderRequestFactory
from tests.helpers import poison, skipped_items

pytestmark = pytest.mark.django_db


def stuck_orders(count: int) -> list[Order]:
    orders = [services.place_order(request=PlaceOrderRequestFactory()) for _ in range(count)]
    for age, order in enumerate(reversed(orders), start=1):  # the first placed is the oldest
        Order.objects.filter(pk=order.pk).update(status_changed_at=timezone.now() - timedelta(hours=age))
    return orders


def test_a_stuck_order_that_cannot_be_read_is_skipped_and_the_rest_are_cancelled(catalogue, caplog):
    older, poisoned, newer = stuck_orders(3)
    # Beyond the column's 12 digits: SQLite stores it, Django cannot read it back (InvalidOperation).
    poison(Order, poisoned.pk, total_amount=Decimal("123456789012345.67"))

    with caplog.at_level(logging.DEBUG, logger="eventbus.sweeps"):
        assert services.cancel_stuck_orders() == [older.pk, newer.pk]
        assert services.cancel_stuck_orders() == []

    statuses = dict(Order.objects.values_list("pk", "status"))
    assert (statuses[older.pk], statuses[poisoned.pk], statuses[newer.pk]) == ("CANCELLED", "PLACED", "CANCELLED")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(poisoned.pk) in errors[0].getMessage()  # once, not every minute
    assert any(r.levelno == logging.DEBUG and str(poisoned.pk) in r.getMessage() for r in caplog.records)
    failure = SweepFailure.objects.get(sweep="cancel-stuck-orders")
    assert (failure.item, failure.failures) == (str(poisoned.pk), 2)
    assert "InvalidOperation" in failure.error
    assert skipped_items("cancel-stuck-orders") == 2


def test_a_repaired_order_is_cancelled_and_its_failure_forgotten(catalogue):
    [order] = stuck_orders(1)
    poison(Order, order.pk, total_amount=Decimal("123456789012345.67"))
    assert services.cancel_stuck_orders() == []
    assert SweepFailure.objects.filter(sweep="cancel-stuck-orders", item=str(order.pk)).exists()

    poison(Order, order.pk, total_amount=Decimal("999.99"))

    assert services.cancel_stuck_orders() == [order.pk]
    assert not SweepFailure.objects.exists()


def expired_keys(count: int, *, client) -> list[IdempotencyKey]:
    order = services.place_order(request=PlaceOrderRequestFactory())
    long_ago = timezone.now() - timedelta(days=30)
    return [
        IdempotencyKey.objects.create(
            client=client, key=f"k-{n}", request_fingerprint="f", order=order, created_at=long_ago
        )
        for n in range(count)
    ]


def test_expired_idempotency_keys_go_in_batches_and_no_row_stops_the_purge(catalogue, monkeypatch):
    client, _ = services.create_api_client(name="purge")
    keys = expired_keys(5, client=client)
    kept = IdempotencyKey.objects.create(client=client, key="fresh", request_fingerprint="f", order=keys[0].order)
    # A timestamp the model cannot read (month 13). The purge reads ids only, never the rows, so a bad
    # row cannot stop it: this guards against a purge that would load what it deletes.
    poison(IdempotencyKey, keys[2].pk, created_at="2020-13-45 00:00:00")
    monkeypatch.setattr("eventbus.sweeps.BATCH_SIZE", 2)

    assert services.purge_expired_idempotency_keys() == 5

    assert list(IdempotencyKey.objects.values_list("pk", flat=True)) == [kept.pk]
    assert skipped_items("purge-idempotency-keys") == 0
