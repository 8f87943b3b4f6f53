from decimal import Decimal

from eventbus import catalogue
from eventbus.consumer import ReceivedEvent
from eventbus.registry import handles

from . import services


@handles(catalogue.ORDER_PLACED)
def remember_order(event: ReceivedEvent) -> str:
    return services.remember_order(
        order_id=event.order_id,
        amount=Decimal(event.data["totalAmount"]),
        currency=event.data["currency"],
        payment_token=event.data.get("paymentToken", "tok_visa"),
        email=event.data.get("email", ""),
    ).status


@handles(catalogue.INVENTORY_RESERVED)
def charge_reserved_order(event: ReceivedEvent) -> str:
    return services.charge_reserved_order(order_id=event.order_id).status


@handles(catalogue.ORDER_CANCELLED)
def settle_cancelled_order(event: ReceivedEvent) -> str:
    return services.settle_cancelled_order(order_id=event.order_id).status
