from eventbus.events import ReceivedEvent
from eventbus.registry import handles_every_event

from . import services


@handles_every_event(name="analytics.count_event")
def count_event(event: ReceivedEvent) -> None:
    services.count_event(detail_type=event.event_type.detail_type, occurred_at=event.occurred_at, data=event.data)
