from eventbus.events import ReceivedEvent
from eventbus.registry import handles_every_event

from . import services


@handles_every_event(name="audit.record_envelope", set_based=True)
def record_envelopes(events: list[ReceivedEvent]) -> None:
    services.record_envelopes(
        envelopes=[
            services.Envelope(
                event_id=event.event_id,
                source=event.event_type.source,
                detail_type=event.event_type.detail_type,
                correlation_id=event.correlation_id,
                occurred_at=event.occurred_at,
                envelope=event.envelope,
            )
            for event in events
        ]
    )
