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
