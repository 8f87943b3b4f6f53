from decimal import Decimal

from eventbus import event_types
from eventbus.events import ReceivedEvent
from eventbus.registry import handles

from . import services


@handles(event_types.ORDER_PLACED, name="payments.remember_order")
def remember_order(event: ReceivedEvent) -> str:
    return services.remember_order(
        order_id=event.order_id,
        amount=Decimal(event.data["totalAmount"]),
        currency=event.data["currency"],
        payment_token=event.data.get("paymentToken", "tok_visa"),
        email=event.data.get("email", ""),
    ).status


@handles(event_types.INVENTORY_RESERVED, name="payments.charge_reserved_order")
def charge_reserved_order(event: ReceivedEvent) -> str:
    return services.charge_reserved_order(order_id=event.order_id).status


@handles(event_types.ORDER_CANCELLED, name="payments.settle_cancelled_order")
def settle_cancelled_order(event: ReceivedEvent) -> str:
    return services.settle_cancelled_order(order_id=event.order_id).status
