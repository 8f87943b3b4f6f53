from contextlib import AbstractContextManager

from eventbus import event_types
from eventbus.events import ReceivedEvent
from eventbus.registry import handles, locks_ahead
from sagas.definition import ORDER_CANCELLED, OUT_OF_STOCK
from sagas.services import answer

from . import services
from .models import Reservation


def _requested(event: ReceivedEvent) -> list[services.RequestedItem]:
    return [services.RequestedItem(product_id=i["productId"], quantity=i["quantity"]) for i in event.data["items"]]


_RESERVING = {event_types.ORDER_PLACED, event_types.RESERVE_STOCK}


@locks_ahead
def hold_stock_for(events: list[ReceivedEvent]) -> AbstractContextManager[None]:
    """Every row a receive's handlers will lock, locked first: the orders' reservations, then the stock
    of the products that the reservations request and that the rest (commits, releases) hold."""
    return services.hold_stock(
        order_ids={event.order_id for event in events},
        skus={item["productId"] for event in events if event.event_type in _RESERVING for item in event.data["items"]},
    )


@handles(event_types.ORDER_PLACED, name="inventory.reserve_stock", coordinator="choreography", batchable=True)
def reserve_stock(event: ReceivedEvent) -> str:
    return services.reserve_stock(order_id=event.order_id, items=_requested(event)).status


@handles(event_types.RESERVE_STOCK, name="inventory.reserve_stock_on_command", coordinator="stepfunctions")
def reserve_stock_on_command(event: ReceivedEvent) -> str:
    reservation = services.reserve_stock(order_id=event.order_id, items=_requested(event))
    reserved = reservation.status in (Reservation.Status.RESERVED, Reservation.Status.COMMITTED)
    failed = reservation.status == Reservation.Status.FAILED
    answer(
        event,
        succeeded=reserved,
        output={"reservation": reservation.status},
        error="" if reserved else OUT_OF_STOCK if failed else ORDER_CANCELLED,
        cause=reservation.failure_reason if failed else f"the reservation is {reservation.status}",
    )
    return reservation.status


@handles(event_types.ORDER_CANCELLED, name="inventory.release_stock", batchable=True)
def release_stock(event: ReceivedEvent) -> str:
    return services.release_stock(order_id=event.order_id).status


@handles(event_types.RELEASE_STOCK, name="inventory.release_stock_on_command", coordinator="stepfunctions")
def release_stock_on_command(event: ReceivedEvent) -> str:
    reservation = services.release_stock(order_id=event.order_id)
    answer(event, succeeded=True, output={"reservation": reservation.status})
    return reservation.status


@handles(event_types.ORDER_CONFIRMED, name="inventory.commit_stock", batchable=True)
def commit_stock(event: ReceivedEvent) -> str:
    reservation = services.commit_stock(order_id=event.order_id)
    return reservation.status if reservation else "no reservation"
