"""Handler ids are the consumer's dedupe key in ProcessedEvent. Changing one makes every event that
handler already processed look new, so a replay or redrive would run it again. These are pinned: if a
test here fails, the change needs a data migration of ProcessedEvent.handler, not an update here."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from eventbus import event_types, registry

# (service, detail-type or "*" for every ecommerce.* event) -> the id ProcessedEvent stores.
PINNED_HANDLER_IDS = {
    ("orders", "Inventory Reserved"): "orders.stock_reserved",
    ("orders", "Reservation Failed"): "orders.reservation_failed",
    ("orders", "Payment Processed"): "orders.payment_processed",
    ("orders", "Payment Failed"): "orders.payment_failed",
    ("orders", "Payment Refunded"): "orders.payment_refunded",
    ("inventory", "Order Placed"): "inventory.reserve_stock",
    ("inventory", "Order Cancelled"): "inventory.release_stock",
    ("inventory", "Order Confirmed"): "inventory.commit_stock",
    ("payments", "Order Placed"): "payments.remember_order",
    ("payments", "Inventory Reserved"): "payments.charge_reserved_order",
    ("payments", "Order Cancelled"): "payments.settle_cancelled_order",
    ("notifications", "Order Confirmed"): "notifications.order_confirmed",
    ("notifications", "Order Cancelled"): "notifications.order_cancelled",
    ("notifications", "Order Shipped"): "notifications.order_shipped",
    ("notifications", "Payment Failed"): "notifications.payment_failed",
    ("notifications", "Payment Refunded"): "notifications.refund_issued",
    ("notifications", "Low Stock Alert"): "notifications.low_stock_alert",
    ("inventory", "Reserve Stock"): "inventory.reserve_stock_on_command",
    ("inventory", "Release Stock"): "inventory.release_stock_on_command",
    ("payments", "Charge Payment"): "payments.charge_on_command",
    ("payments", "Refund Payment"): "payments.settle_on_command",
    ("orders", "Confirm Order"): "orders.confirm_on_command",
    ("orders", "Cancel Order"): "orders.cancel_on_command",
    ("sagas", "Order Placed"): "sagas.start_execution",
    ("analytics", "*"): "analytics.count_event",
    ("audit", "*"): "audit.record_envelope",
}


def test_every_handler_keeps_the_id_its_processed_events_are_stored_under():
    declared = {
        (subscription.service, subscription.event_type.detail_type if subscription.event_type else "*"): (
            subscription.handler_id
        )
        for subscription in registry.subscriptions()
    }
    assert declared == PINNED_HANDLER_IDS


def test_ids_are_unique_across_services():
    ids = [subscription.handler_id for subscription in registry.subscriptions()]
    handlers_per_id = {
        handler_id: {s.handler for s in registry.subscriptions() if s.handler_id == handler_id} for handler_id in ids
    }
    assert all(len(handlers) == 1 for handlers in handlers_per_id.values())
    registry.check_unique_handler_ids()


@pytest.fixture
def scratch_registry(monkeypatch):
    """A registry of its own, so the declarations below never reach the project's routing."""
    monkeypatch.setattr(registry, "_exact", {})
    monkeypatch.setattr(registry, "_every_event", {})


def _handler_in(module: str, name: str):
    def handler(event):
        return None

    handler.__module__ = module
    handler.__qualname__ = name
    return handler


def test_renaming_a_function_keeps_its_id(scratch_registry):
    registry.handles(event_types.ORDER_PLACED, name="inventory.reserve_stock")(_handler_in("inventory.handlers", "a"))
    subscription = registry.subscription_for("inventory", *event_types.ORDER_PLACED)
    assert subscription.handler_id == "inventory.reserve_stock"
    assert subscription.handler.__qualname__ == "a"


def test_two_functions_under_one_id_are_refused_at_start_up(scratch_registry):
    registry.handles(event_types.ORDER_PLACED, name="inventory.reserve_stock")(_handler_in("inventory.handlers", "a"))
    registry.handles(event_types.ORDER_CANCELLED, name="inventory.reserve_stock")(
        _handler_in("inventory.handlers", "b")
    )
    with pytest.raises(ImproperlyConfigured, match="'inventory.reserve_stock' is declared by both"):
        registry.check_unique_handler_ids()


def test_an_id_must_name_the_handler_s_own_service(scratch_registry):
    with pytest.raises(ImproperlyConfigured, match="must be 'inventory.<name>'"):
        registry.handles(event_types.ORDER_PLACED, name="payments.reserve_stock")(
            _handler_in("inventory.handlers", "reserve_stock")
        )


def test_one_event_twice_in_one_service_is_refused(scratch_registry):
    registry.handles(event_types.ORDER_PLACED, name="inventory.a")(_handler_in("inventory.handlers", "a"))
    with pytest.raises(ImproperlyConfigured, match="already handles ecommerce.orders/Order Placed"):
        registry.handles(event_types.ORDER_PLACED, name="inventory.b")(_handler_in("inventory.handlers", "b"))


def test_only_handlers_without_outside_effects_share_a_batch_transaction_and_stock_is_locked_ahead():
    # Payments and the saga's commands must each commit alone; the orders' reactions lock only their
    # event's order (a receive's orders are locked first, in one query); inventory's lock the stock
    # rows that many orders share, so inventory takes a receive's stock rows first
    # (eventbus/registry.py); audit and analytics take a receive as one set, in key order, and
    # payments take runs of a receive's events as sets, outside the batch's transaction: this list
    # changes only with a reason.
    batchable = {s.handler_id for s in registry.subscriptions() if s.batchable}
    set_based = {s.handler_id for s in registry.subscriptions() if s.set_based}
    assert set_based == {
        "audit.record_envelope",
        "analytics.count_event",
        "payments.remember_order",
        "payments.charge_reserved_order",
        "payments.settle_cancelled_order",
        "payments.charge_on_command",
        "payments.settle_on_command",
    }
    assert batchable == {"audit.record_envelope", "analytics.count_event"} | {
        "notifications.order_confirmed",
        "notifications.order_cancelled",
        "notifications.order_shipped",
        "notifications.payment_failed",
        "notifications.refund_issued",
        "notifications.low_stock_alert",
        "orders.stock_reserved",
        "orders.reservation_failed",
        "orders.payment_processed",
        "orders.payment_failed",
        "orders.payment_refunded",
        "inventory.reserve_stock",
        "inventory.release_stock",
        "inventory.commit_stock",
    }
    assert set(registry._locks_ahead) == {"inventory", "orders"}


def test_a_service_locks_ahead_with_one_function():
    def another(events):
        return None

    another.__module__ = "inventory.handlers"
    with pytest.raises(ImproperlyConfigured, match="already locks ahead"):
        registry.locks_ahead(another)
    assert registry._locks_ahead["inventory"].__name__ == "hold_stock_for"


def test_a_handler_that_commits_its_own_transactions_cannot_be_batchable():
    def handler(event):
        return None

    handler.__module__ = "payments.handlers"
    with pytest.raises(ImproperlyConfigured, match="cannot share a batch"):
        registry.handles(event_types.ORDER_PLACED, name="payments.both", batchable=True, own_transactions=True)(handler)


def test_only_a_handler_with_its_own_transactions_may_take_sets_of_exact_events():
    def handler(events):
        return []

    handler.__module__ = "orders.handlers"
    with pytest.raises(ImproperlyConfigured, match="only own-transactions handlers"):
        registry.handles(event_types.ORDER_PLACED, name="orders.sets", set_based=True)(handler)


def test_every_payments_handler_runs_outside_the_delivery_transaction():
    # Each may call the gateway, which must not happen with a transaction open.
    payments = [s for s in registry.subscriptions() if s.service == "payments"]
    assert payments and all(s.own_transactions for s in payments)
