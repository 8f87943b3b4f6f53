"""Replaying archived events to chosen services (docs/replay.md).

On AWS, `StartReplay` replays the archive `<bus>-archive` over a window, restricted to the chosen
services' rules with `Destination.FilterArns`. moto's replay ignores both the window and the filter,
so on the local stack the same replay is made from the audit store, which keeps every envelope
verbatim: the envelopes of the window are filtered with each service's own rule pattern (the offline
engine in eventbus.patterns) and sent to that service's queue with `replay-name` set and a new
envelope id, as EventBridge would send them. Either way, consumers deduplicate on
`detail.metadata.eventId`, so a replay never reserves, charges or emails twice.

A service whose state is derived only from events (analytics) can be rebuilt: its state for the
window and its dedupe records are cleared in one transaction, then the window is replayed to it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import aws, registry, topology
from .models import ProcessedEvent
from .patterns import compile_pattern, matches

logger = logging.getLogger(__name__)

# (start, end) -> the envelopes whose occurredAt is in [start, end), oldest first. The audit service
# registers its store at start-up; the plumbing does not import it.
EnvelopeSource = Callable[[datetime, datetime], Iterable[dict[str, Any]]]
# (start, end) -> clears a derived-state service's state for the window, inside the caller's transaction.
Rebuilder = Callable[[datetime, datetime], None]

_envelope_source: EnvelopeSource | None = None
_rebuilders: dict[str, Rebuilder] = {}


class ReplayError(ValueError):
    """A replay that cannot be made as asked; the message says why."""


def set_envelope_source(source: EnvelopeSource | None) -> None:
    global _envelope_source
    _envelope_source = source


def register_rebuilder(service: str, rebuilder: Rebuilder) -> None:
    _rebuilders[service] = rebuilder


def rebuildable_services() -> list[str]:
    return sorted(_rebuilders)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise ReplayError(
                f"the window is empty: --from {self.start.isoformat()} is not before --to {self.end.isoformat()}"
            )

    def to_whole_hours(self) -> Window:
        start = self.start.replace(minute=0, second=0, microsecond=0)
        end = self.end.replace(minute=0, second=0, microsecond=0)
        if end < self.end:
            end += timedelta(hours=1)
        return Window(start, end)


def envelopes(window: Window) -> Iterator[dict[str, Any]]:
    if _envelope_source is None:
        raise ReplayError("no envelope store is registered (the audit app registers it)")
    yield from _envelope_source(window.start, window.end)


def check_services(services: list[str]) -> list[str]:
    known = registry.services()
    unknown = sorted(set(services) - set(known))
    if unknown:
        raise ReplayError(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return sorted(set(services))


def plan(*, services: list[str], window: Window) -> Counter:
    """How many events each service would get, per detail-type: (service, detail-type) -> count."""
    patterns = {service: compile_pattern(registry.event_pattern(service)) for service in services}
    counts: Counter = Counter()
    for envelope in envelopes(window):
        for service, pattern in patterns.items():
            if matches(pattern, envelope):
                counts[(service, envelope.get("detail-type", ""))] += 1
    return counts


def replay_locally(*, services: list[str], window: Window, name: str) -> Counter:
    """Send the window's envelopes that each service's rule matches to its queue, as EventBridge's
    replay would: the envelope verbatim but for a new `id`, with `replay-name` set."""
    patterns = {service: compile_pattern(registry.event_pattern(service)) for service in services}
    sqs = aws.client("sqs")
    urls = {
        service: sqs.get_queue_url(QueueName=topology.SERVICE_QUEUES[service].name)["QueueUrl"] for service in services
    }
    pending: dict[str, list[dict[str, Any]]] = {service: [] for service in services}
    sent: Counter = Counter()

    def flush(service: str) -> None:
        batch = pending[service]
        if not batch:
            return
        response = sqs.send_message_batch(QueueUrl=urls[service], Entries=batch)
        for failure in response.get("Failed", []):
            raise ReplayError(f"{topology.SERVICE_QUEUES[service].name} refused a replayed event: {failure}")
        pending[service] = []

    for envelope in envelopes(window):
        for service, pattern in patterns.items():
            if not matches(pattern, envelope):
                continue
            replayed = {**envelope, "id": str(uuid.uuid4()), "replay-name": name}
            pending[service].append({"Id": str(len(pending[service])), "MessageBody": json.dumps(replayed)})
            sent[(service, envelope.get("detail-type", ""))] += 1
            if len(pending[service]) == 10:
                flush(service)
    for service in services:
        flush(service)
    logger.info("replay %s: sent %d event(s) from the audit store", name, sum(sent.values()))
    return sent


def archive_arn() -> str:
    return aws.client("events").describe_archive(ArchiveName=topology.archive_name())["ArchiveArn"]


def start_replay_request(*, services: list[str], window: Window, name: str, bus_arn: str, rule_arns: list[str]) -> dict:
    return {
        "ReplayName": name,
        "Description": f"shopbus replay to {', '.join(services)}",
        "EventSourceArn": archive_arn(),
        "EventStartTime": window.start,
        "EventEndTime": window.end,
        "Destination": {"Arn": bus_arn, "FilterArns": rule_arns},
    }


def start_aws_replay(*, services: list[str], window: Window, name: str) -> dict[str, Any]:
    events = aws.client("events")
    bus = events.describe_event_bus(Name=topology.bus_name())
    rule_arns = [
        events.describe_rule(Name=topology.SERVICE_QUEUES[service].rule_name, EventBusName=topology.bus_name())["Arn"]
        for service in services
    ]
    request = start_replay_request(services=services, window=window, name=name, bus_arn=bus["Arn"], rule_arns=rule_arns)
    return events.start_replay(**request)


def uses_archive_replay() -> bool:
    """Real AWS replays from its archive; the local endpoint replays from the audit store."""
    return not settings.USES_LOCAL_AWS


@transaction.atomic
def clear_for_rebuild(*, service: str, window: Window) -> int:
    """Clear a derived-state service's state for the window and its dedupe records of the window's
    events, in one transaction, so the replay that follows is processed afresh."""
    rebuilder = _rebuilders.get(service)
    if rebuilder is None:
        raise ReplayError(
            f"{service} cannot be rebuilt: its handlers have effects beyond its own tables (stock, charges, "
            f"emails) or keep the record itself; replay to it without --rebuild (duplicates are skipped). "
            f"Rebuildable: {', '.join(rebuildable_services()) or 'none'}"
        )
    rebuilder(window.start, window.end)
    handler_ids = {s.handler_id for s in registry.subscriptions(active_only=True) if s.service == service}
    event_ids = [envelope["detail"]["metadata"]["eventId"] for envelope in envelopes(window)]
    deleted = 0
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start : start + 500]
        deleted += ProcessedEvent.objects.filter(handler__in=handler_ids, event_id__in=chunk).delete()[0]
    return deleted


def default_name(services: list[str]) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return topology.prefixed(f"replay-{'-'.join(services)}-{stamp}")[:64]
