from eventbus import event_types
from eventbus.events import ReceivedEvent
from eventbus.registry import handles

from . import services


@handles(event_types.ORDER_PLACED, name="sagas.start_execution", coordinator="stepfunctions")
def start_execution(event: ReceivedEvent) -> str:
    return services.start_execution(order_id=event.order_id, order=event.data)
