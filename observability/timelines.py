"""One order's story from the event plumbing: every event recorded for it, in order, which services
handled each and when, and every delivery that failed. Three queries, however long the story."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils.dateparse import parse_datetime

from eventbus.models import DeliveryFailure, OutboxEvent, ProcessedEvent


@dataclass(frozen=True)
class Handling:
    service: str
    handler: str
    handled_at: datetime
    latency_ms: float
    note: str
    replay_name: str


@dataclass(frozen=True)
class TimelineEntry:
    event_id: str
    detail_type: str
    source: str
    occurred_at: datetime
    causation_id: str | None
    status: str  # the outbox row's: PENDING, PUBLISHED or FAILED
    published_at: datetime | None
    handled_by: list[Handling]
    failures: list[DeliveryFailure]


def order_timeline(*, order_id: str) -> list[TimelineEntry]:
    events = list(OutboxEvent.objects.filter(correlation_id=str(order_id)).order_by("created_at", "id"))
    event_ids = [event.id for event in events]
    handled: dict[str, list[ProcessedEvent]] = {}
    for processed in ProcessedEvent.objects.filter(event_id__in=event_ids).order_by("processed_at"):
        handled.setdefault(str(processed.event_id), []).append(processed)
    failures: dict[str, list[DeliveryFailure]] = {}
    for failure in DeliveryFailure.objects.filter(event_id__in=[str(i) for i in event_ids]).order_by("first_failed_at"):
        failures.setdefault(failure.event_id, []).append(failure)
    timeline = []
    for event in events:
        metadata = event.detail["metadata"]
        occurred_at = parse_datetime(metadata["occurredAt"]) or event.created_at
        timeline.append(
            TimelineEntry(
                event_id=str(event.id),
                detail_type=event.detail_type,
                source=event.source,
                occurred_at=occurred_at,
                causation_id=metadata.get("causationId"),
                status=event.status,
                published_at=event.published_at,
                handled_by=[
                    Handling(
                        service=processed.handler.split(".")[0],
                        handler=processed.handler,
                        handled_at=processed.processed_at,
                        latency_ms=(processed.processed_at - occurred_at).total_seconds() * 1000,
                        note=processed.note,
                        replay_name=processed.replay_name,
                    )
                    for processed in handled.get(str(event.id), [])
                ],
                failures=failures.get(str(event.id), []),
            )
        )
    return timeline
