from __future__ import annotations

import pytest

from eventbus.models import OutboxEvent
from eventbus.state_machine import IllegalTransition
from orders import services
from orders.models import Order
from tests.factories import PlaceOrderRequestFactory

pytestmark = pytest.mark.django_db

S = Order.Status
ALLOWED = {
    (S.PLACED, S.RESERVED),
    (S.PLACED, S.CANCELLED),
    (S.RESERVED, S.CONFIRMED),
    (S.RESERVED, S.CANCELLED),
    (S.CONFIRMED, S.SHIPPED),
    (S.CONFIRMED, S.CANCELLED),
}


@pytest.mark.parametrize("current", S.values)
@pytest.mark.parametrize("target", S.values)
def test_only_the_saga_s_transitions_are_allowed(current, target):
    order = Order(status=current)
    if (current, target) in ALLOWED:
        order.transition_to(target)
        assert order.status == target
    else:
        with pytest.raises(IllegalTransition):
            order.transition_to(target)
        assert order.status == current


def test_inventory_reserved_moves_a_placed_order_on(catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    assert services.mark_order_reserved(order_id=order.pk) == "RESERVED"
    order.refresh_from_db()
    assert order.status == S.RESERVED


def test_a_failed_reservation_cancels_the_order_as_out_of_stock(catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    services.cancel_for_missing_stock(order_id=order.pk, reason="Only 5 of Keyboard (prod-3) available, 6 requested")
    order.refresh_from_db()
    assert order.status == S.CANCELLED
    assert order.cancellation_reason_code == "OUT_OF_STOCK"
    assert order.cancellation_reason == "Only 5 of Keyboard (prod-3) available, 6 requested"
    cancelled = OutboxEvent.objects.get(detail_type="Order Cancelled").detail["data"]
    assert (cancelled["reasonCode"], cancelled["previousStatus"]) == ("OUT_OF_STOCK", "PLACED")


def test_a_late_event_for_an_order_that_moved_on_is_ignored(catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    services.cancel_order(order_id=order.pk, reason_code="CUSTOMER_REQUEST", reason="changed my mind")

    note = services.mark_order_reserved(order_id=order.pk)

    assert note == "ignored: order is CANCELLED"
    order.refresh_from_db()
    assert order.status == S.CANCELLED
    assert OutboxEvent.objects.filter(detail_type="Order Cancelled").count() == 1


def test_an_unknown_cancellation_code_is_refused(catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    with pytest.raises(ValueError, match="unknown cancellation reason"):
        services.cancel_order(order_id=order.pk, reason_code="BORED", reason="x")


def test_payment_processed_overtaking_inventory_reserved_still_confirms(catalogue):
    # Found by the saga search: both events land on the orders queue, in either order.
    order = services.place_order(request=PlaceOrderRequestFactory())
    assert services.confirm_paid_order(order_id=order.pk) == "CONFIRMED"
    assert services.mark_order_reserved(order_id=order.pk) == "ignored: order is CONFIRMED"
    assert OutboxEvent.objects.filter(detail_type="Order Confirmed").count() == 1


def test_a_declined_payment_cancels_the_order(catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    services.mark_order_reserved(order_id=order.pk)
    services.cancel_for_failed_payment(order_id=order.pk, reason="Your card was declined.")
    order.refresh_from_db()
    assert (order.status, order.cancellation_reason_code) == (S.CANCELLED, "PAYMENT_FAILED")


def test_only_a_confirmed_order_ships(catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    with pytest.raises(IllegalTransition):
        services.ship_order(order_id=order.pk, carrier="UPS", tracking_number="1Z")
    services.confirm_paid_order(order_id=order.pk)
    services.ship_order(order_id=order.pk, carrier="UPS", tracking_number="1Z999")
    shipped = OutboxEvent.objects.get(detail_type="Order Shipped").detail["data"]
    assert (shipped["carrier"], shipped["trackingNumber"]) == ("UPS", "1Z999")
    with pytest.raises(ValueError, match="carrier and a tracking number"):
        services.ship_order(order_id=order.pk, carrier=" ", tracking_number="1Z")


def test_orders_stuck_too_long_are_cancelled_as_timed_out(catalogue, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.ORDER_TIMEOUT_MINUTES = 15
    stuck = services.place_order(request=PlaceOrderRequestFactory())
    reserved = services.place_order(request=PlaceOrderRequestFactory())
    services.mark_order_reserved(order_id=reserved.pk)
    fresh = services.place_order(request=PlaceOrderRequestFactory())
    confirmed = services.place_order(request=PlaceOrderRequestFactory())
    services.confirm_paid_order(order_id=confirmed.pk)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Order.objects.filter(pk__in=[stuck.pk, reserved.pk, confirmed.pk]).update(status_changed_at=an_hour_ago)

    cancelled = services.cancel_stuck_orders()

    assert set(cancelled) == {stuck.pk, reserved.pk}
    for order, status in ((stuck, S.CANCELLED), (reserved, S.CANCELLED), (fresh, S.PLACED), (confirmed, S.CONFIRMED)):
        order.refresh_from_db()
        assert order.status == status
    assert Order.objects.get(pk=stuck.pk).cancellation_reason_code == "TIMEOUT"
