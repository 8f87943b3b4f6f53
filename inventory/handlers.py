from eventbus import catalogue
from eventbus.consumer import ReceivedEvent
from eventbus.registry import handles

from . import services


@handles(catalogue.ORDER_PLACED)
def reserve_stock(event: ReceivedEvent) -> str:
    items = [services.RequestedItem(product_id=i["productId"], quantity=i["quantity"]) for i in event.data["items"]]
    return services.reserve_stock(order_id=event.order_id, items=items).status


@handles(catalogue.ORDER_CANCELLED)
def release_stock(event: ReceivedEvent) -> str:
    return services.release_stock(order_id=event.order_id).status


@handles(catalogue.ORDER_CONFIRMED)
def commit_stock(event: ReceivedEvent) -> str:
    reservation = services.commit_stock(order_id=event.order_id)
    return reservation.status if reservation else "no reservation"
