from eventbus import event_types
from eventbus.events import ReceivedEvent
from eventbus.registry import handles

from . import services


@handles(event_types.ORDER_PLACED, name="inventory.reserve_stock")
def reserve_stock(event: ReceivedEvent) -> str:
    items = [services.RequestedItem(product_id=i["productId"], quantity=i["quantity"]) for i in event.data["items"]]
    return services.reserve_stock(order_id=event.order_id, items=items).status


@handles(event_types.ORDER_CANCELLED, name="inventory.release_stock")
def release_stock(event: ReceivedEvent) -> str:
    return services.release_stock(order_id=event.order_id).status


@handles(event_types.ORDER_CONFIRMED, name="inventory.commit_stock")
def commit_stock(event: ReceivedEvent) -> str:
    reservation = services.commit_stock(order_id=event.order_id)
    return reservation.status if reservation else "no reservation"
