"""The saga end to end on moto's real server with a real worker: confirm, compensate, refund, time out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail

from inventory.models import StockItem
from notifications.models import Notification
from orders import services
from orders.models import Order
from payments.models import Payment
from tests.helpers import place_demo_order as place
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def reaches(order: Order, status: str) -> None:
    wait_for(lambda: Order.objects.get(pk=order.pk).status == status, what=f"order to reach {status}")


def stock(sku: str) -> StockItem:
    return StockItem.objects.get(product__sku=sku)


def emailed(order: Order, kind: str) -> Notification:
    return wait_for(
        lambda: Notification.objects.filter(correlation_id=str(order.pk), kind=kind, status="SENT").first(),
        what=f"{kind} email",
    )


def test_an_order_confirms_by_itself_and_the_customer_is_emailed(live_stack):
    order = place()
    reaches(order, "CONFIRMED")

    emailed(order, "order_confirmed")
    assert any(m.to == [order.email] and m.subject == "Your order is confirmed" for m in mail.outbox)
    wait_for(lambda: stock("prod-1").on_hand == 49, what="inventory to commit the sale")
    assert stock("prod-1").reserved == 0
    assert Payment.objects.get(order_id=order.pk).status == "CHARGED"


def test_a_declined_payment_cancels_the_order_releases_the_stock_and_tells_the_customer(live_stack):
    order = place(token="tok_chargeDeclined", sku="prod-2", quantity=3)
    reaches(order, "CANCELLED")

    order.refresh_from_db()
    assert order.cancellation_reason_code == "PAYMENT_FAILED"
    wait_for(lambda: stock("prod-2").available == 100, what="the stock to be released")
    emailed(order, "payment_failed")


def test_cancelling_a_confirmed_order_refunds_it_and_returns_the_stock(live_stack):
    order = place(sku="prod-4", quantity=2)
    reaches(order, "CONFIRMED")
    wait_for(lambda: stock("prod-4").on_hand == 28, what="the sale to be committed")

    services.cancel_order(order_id=order.pk, reason_code="CUSTOMER_REQUEST", reason="No longer needed")

    wait_for(lambda: Payment.objects.get(order_id=order.pk).status == "REFUNDED", what="the refund")
    wait_for(lambda: stock("prod-4").on_hand == 30, what="the stock to be returned")
    wait_for(lambda: Order.objects.get(pk=order.pk).refunded_at is not None, what="orders to note the refund")
    emailed(order, "refund_issued")
    emailed(order, "order_cancelled")


def test_a_gateway_that_keeps_failing_cancels_the_order_and_tells_the_customer_why(live_stack):
    order = place(token="tok_gatewayError", sku="prod-5", quantity=4)
    reaches(order, "CANCELLED")  # after PAYMENT_MAX_GATEWAY_ATTEMPTS deliveries, not the stuck-order timeout

    order.refresh_from_db()
    assert order.cancellation_reason_code == "PAYMENT_FAILED"
    assert Payment.objects.get(order_id=order.pk).failure_code == "GATEWAY_ERROR"
    wait_for(lambda: stock("prod-5").available == 60, what="the stock to be released")
    emailed(order, "payment_failed")
    assert any(m.to == [order.email] and "payment provider" in m.body for m in mail.outbox)


def test_an_order_stuck_without_payments_times_out_and_is_compensated(start_stack):
    start_stack(consumers=["orders", "inventory", "notifications"])  # no payments worker is running
    order = place(sku="prod-5", quantity=4)
    reaches(order, "RESERVED")

    assert services.cancel_stuck_orders(older_than=timedelta(0)) == [order.pk]

    reaches(order, "CANCELLED")
    assert Order.objects.get(pk=order.pk).cancellation_reason_code == "TIMEOUT"
    wait_for(lambda: stock("prod-5").available == 60, what="the stock to be released")
    emailed(order, "order_cancelled")
