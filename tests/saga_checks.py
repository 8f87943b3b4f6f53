"""The saga's invariants, checked the same way for both coordinators once an order has settled."""

from __future__ import annotations

from typing import TypeVar

from hypothesis import strategies as st

from eventbus.models import OutboxEvent
from inventory.models import Reservation, StockItem
from orders.models import Order
from payments.models import Payment, Refund, SimulatedGatewayRequest

Delivery = TypeVar("Delivery")

SETTLED_RESERVATIONS = (
    Reservation.Status.RELEASED,
    Reservation.Status.RETURNED,
    Reservation.Status.FAILED,
    Reservation.Status.VOIDED,
)


def assert_settled_consistently(order: Order, *, on_hand: int, reservation_may_be_missing: bool = False) -> None:
    """The order is final and every service agrees with it; stock is conserved; at most one charge,
    and the gateway's ledger holds exactly the charge and refund payments recorded; a refund exactly
    when a charge was followed by a cancel. In the choreography inventory always
    records the order (a VOIDED tombstone at least); the orchestrated saga may compensate before
    inventory ever saw it."""
    line = order.lines.get()
    stock = StockItem.objects.get(product__sku=line.product_id)
    reservation = Reservation.objects.filter(order_id=order.pk).first()
    payment = Payment.objects.get(order_id=order.pk)
    charges = OutboxEvent.objects.filter(correlation_id=str(order.pk), detail_type="Payment Processed").count()
    refunds = Refund.objects.filter(payment=payment).count()
    # What the (simulated) provider itself holds: a charge or refund payments never recorded would show.
    provider = SimulatedGatewayRequest.objects.filter(approved=True)
    provider_charges = provider.filter(operation="charge", idempotency_key=str(order.pk)).count()
    provider_refunds = provider.filter(operation="refund", idempotency_key=f"refund:{order.pk}").count()

    assert order.status in (Order.Status.CONFIRMED, Order.Status.CANCELLED)
    if order.status == Order.Status.CONFIRMED:
        assert reservation is not None
        assert reservation.status == Reservation.Status.COMMITTED
        assert payment.status == Payment.Status.CHARGED
    else:
        if reservation is None:
            assert reservation_may_be_missing
        else:
            assert reservation.status in SETTLED_RESERVATIONS
        assert payment.status in (Payment.Status.VOIDED, Payment.Status.DECLINED, Payment.Status.REFUNDED)

    # Nothing stays reserved, and only a confirmed order takes units away.
    sold = line.quantity if order.status == Order.Status.CONFIRMED else 0
    assert stock.reserved == 0
    assert stock.on_hand == on_hand - sold

    assert charges <= 1
    assert refunds == (1 if charges and order.status == Order.Status.CANCELLED else 0)
    assert (provider_charges, provider_refunds) == (charges, refunds)


def received_with(data: st.DataObject, pending: list[Delivery], same_queue: list[Delivery]) -> list[Delivery]:
    """The pending deliveries a worker receives along with the one it took, in any order: up to four
    of `same_queue` (those pending to its queue), each taken off `pending` (a delivery drawn twice is
    taken twice only if it is pending twice, as a duplicate is)."""
    if not same_queue:
        return []
    taken = []
    for delivery in data.draw(st.lists(st.sampled_from(same_queue), max_size=4), label="received with"):
        if delivery in pending:
            pending.remove(delivery)
            taken.append(delivery)
    return taken
