from eventbus.events import ReceivedEvent
from eventbus.registry import handles_every_event

from . import services


@handles_every_event(name="analytics.count_event", set_based=True)
def count_events(events: list[ReceivedEvent]) -> None:
    services.count_events(
        events=[
            services.CountedEvent(
                detail_type=event.event_type.detail_type, occurred_at=event.occurred_at, data=event.data
            )
            for event in events
        ]
    )
