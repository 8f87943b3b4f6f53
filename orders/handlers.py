from eventbus import catalogue
from eventbus.consumer import ReceivedEvent
from eventbus.registry import handles

from . import services


@handles(catalogue.INVENTORY_RESERVED)
def stock_reserved(event: ReceivedEvent) -> str:
    return services.on_stock_reserved(order_id=event.order_id)


@handles(catalogue.RESERVATION_FAILED)
def reservation_failed(event: ReceivedEvent) -> str:
    return services.on_reservation_failed(order_id=event.order_id, reason=event.data.get("reason", ""))


@handles(catalogue.PAYMENT_PROCESSED)
def payment_processed(event: ReceivedEvent) -> str:
    return services.on_payment_processed(order_id=event.order_id)


@handles(catalogue.PAYMENT_FAILED)
def payment_failed(event: ReceivedEvent) -> str:
    return services.on_payment_failed(order_id=event.order_id, reason=event.data.get("reason", ""))


@handles(catalogue.PAYMENT_REFUNDED)
def payment_refunded(event: ReceivedEvent) -> str:
    return services.on_payment_refunded(order_id=event.order_id)
