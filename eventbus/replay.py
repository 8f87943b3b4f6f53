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
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import aws, registry, selectors, topology
from .models import OutboxEvent, ProcessedEvent
from .patterns import compile_pattern, matches

logger = logging.getLogger(__name__)

# (start, end) -> the envelopes whose occurredAt is in [start, end), oldest first. The audit service
# registers its store at start-up; the plumbing does not import it.
EnvelopeSource = Callable[[datetime, datetime], Iterable[dict[str, Any]]]
# (start, end) -> clears a derived-state service's state for the window, inside the caller's transaction.
Rebuilder = Callable[[datetime, datetime], None]

_envelope_source: EnvelopeSource | None = None
_envelope_source_service: str | None = None  # whose queue fills the store
_rebuilders: dict[str, Rebuilder] = {}

# A rebuild clears and replays the events the envelope store holds, but a derived-state service can
# handle an event before the store's own service has stored it (separate queues, each batching): the
# events of the last minutes would lose their counts. So a rebuild's window must end this long ago.
REBUILD_SETTLE = timedelta(minutes=10)


class ReplayError(ValueError):
    """A replay that cannot be made as asked; the message says why."""


def set_envelope_source(source: EnvelopeSource | None, *, fed_by: str | None = None) -> None:
    """`fed_by` is the service whose queue fills the store: a rebuild refuses while its DLQ holds
    events the store lacks."""
    global _envelope_source, _envelope_source_service
    _envelope_source, _envelope_source_service = source, fed_by


def check_rebuild_window(window: Window) -> None:
    """Refuse a rebuild of a (whole-hour) window whose events the envelope store may not all hold yet:
    one that ends within REBUILD_SETTLE of now, or any while the store's own service has dead letters."""
    settled_by = timezone.now() - REBUILD_SETTLE
    if window.end > settled_by:
        last_hour = settled_by.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        raise ReplayError(
            f"a rebuild's window must end at least {REBUILD_SETTLE.seconds // 60} minutes ago: the store that "
            f"says which events to clear and replay may not hold the last minutes' events yet, and their counts "
            f"would be lost. End it at {last_hour:%Y-%m-%dT%H:%MZ} or earlier"
        )
    if _envelope_source_service is not None:
        dead_letters = topology.SERVICE_QUEUES[_envelope_source_service].dlq_name
        visible, in_flight = selectors.message_counts(dead_letters)
        if visible + in_flight:
            raise ReplayError(
                f"{dead_letters} holds {visible + in_flight} message(s): the store lacks those events, and a "
                f"rebuild would lose their counts. Redrive them first (dlq redrive {_envelope_source_service})"
            )


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
        # In UTC, the hours analytics keeps: a time given at +05:30 rounds to a half hour in its own.
        start = self.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        end = self.end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
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


class _QueueSender:
    """Sends envelopes straight to service queues, ten to a batch, as a rule's target would receive them
    but with a new envelope `id` and `replay-name` set, as EventBridge's replay does."""

    def __init__(self, *, services: list[str], name: str) -> None:
        self.sqs = aws.client("sqs")
        self.name = name
        self.urls = {
            service: self.sqs.get_queue_url(QueueName=topology.SERVICE_QUEUES[service].name)["QueueUrl"]
            for service in services
        }
        self.pending: dict[str, list[dict[str, Any]]] = {service: [] for service in services}
        self.sent: Counter = Counter()

    def send(self, service: str, envelope: dict[str, Any]) -> None:
        replayed = {**envelope, "id": str(uuid.uuid4()), "replay-name": self.name}
        self.pending[service].append({"Id": str(len(self.pending[service])), "MessageBody": json.dumps(replayed)})
        self.sent[(service, envelope.get("detail-type", ""))] += 1
        if len(self.pending[service]) == 10:
            self.flush(service)

    def flush(self, service: str) -> None:
        batch = self.pending[service]
        if not batch:
            return
        response = self.sqs.send_message_batch(QueueUrl=self.urls[service], Entries=batch)
        for failure in response.get("Failed", []):
            raise ReplayError(f"{topology.SERVICE_QUEUES[service].name} refused a replayed event: {failure}")
        self.pending[service] = []

    def flush_all(self) -> Counter:
        for service in self.pending:
            self.flush(service)
        return self.sent


def replay_locally(*, services: list[str], window: Window, name: str) -> Counter:
    """Send the window's envelopes that each service's rule matches to its queue, as EventBridge's
    replay would: the envelope verbatim but for a new `id`, with `replay-name` set."""
    patterns = {service: compile_pattern(registry.event_pattern(service)) for service in services}
    sender = _QueueSender(services=services, name=name)
    for envelope in envelopes(window):
        for service, pattern in patterns.items():
            if matches(pattern, envelope):
                sender.send(service, envelope)
    sent = sender.flush_all()
    logger.info("replay %s: sent %d event(s) from the audit store", name, sum(sent.values()))
    return sent


# --- reconciling after the endpoint lost its queues --------------------------------------------------
# moto keeps queues in memory: when the local endpoint restarts, every event published but not yet
# consumed is gone. The database still knows what was published (the outbox, and audit's copy of every
# envelope it saw) and what each handler processed (ProcessedEvent), so the difference is delivered
# again. Duplicate detection makes an event that was in fact handled meanwhile harmless.


def retention_window() -> Window:
    """What the archive would keep, up to now: the span reconciliation looks at."""
    now = timezone.now()
    days = settings.EVENT_ARCHIVE_RETENTION_DAYS
    if days < 0:
        raise ReplayError(f"EVENT_ARCHIVE_RETENTION_DAYS must be 0 (keep for ever) or more, not {days}")
    # 0 is EventBridge's "retain indefinitely" (provision_aws passes it to the archive as is).
    return Window(datetime(1970, 1, 1, tzinfo=UTC) if days == 0 else now - timedelta(days=days), now)


def published_envelopes(window: Window) -> list[dict[str, Any]]:
    """Every event published in the window once, oldest first: audit's envelope where audit kept one,
    otherwise the published outbox row in the envelope EventBridge builds around its detail. Either
    source alone misses some: audit what it has not consumed yet, the outbox what other producers (a
    state machine) publish."""
    by_id: dict[str, dict[str, Any]] = {}
    if _envelope_source is not None:
        for envelope in _envelope_source(window.start, window.end):
            by_id[str(envelope["detail"]["metadata"]["eventId"])] = envelope
    rows = OutboxEvent.objects.filter(
        status=OutboxEvent.Status.PUBLISHED, created_at__gte=window.start, created_at__lt=window.end
    ).order_by("created_at", "id")
    account = None
    for row in rows.iterator(chunk_size=500):
        if str(row.id) in by_id:
            continue
        if account is None:
            account = aws.client("sts").get_caller_identity()["Account"]
        by_id[str(row.id)] = {
            "version": "0",
            "id": row.event_bridge_id or str(uuid.uuid4()),
            "detail-type": row.detail_type,
            "source": row.source,
            "account": account,
            "time": row.created_at.isoformat().replace("+00:00", "Z"),
            "region": settings.AWS_REGION,
            "resources": [],
            "detail": row.detail,
        }
    return sorted(by_id.values(), key=lambda envelope: envelope["detail"]["metadata"]["occurredAt"])


def unprocessed(window: Window) -> Iterator[tuple[str, dict[str, Any]]]:
    """(service, envelope) for each published event a subscribing service's handler has no
    ProcessedEvent for."""
    services = registry.services()
    published = published_envelopes(window)
    for start in range(0, len(published), 500):
        chunk = published[start : start + 500]
        ids = [uuid.UUID(str(envelope["detail"]["metadata"]["eventId"])) for envelope in chunk]
        handled = set(ProcessedEvent.objects.filter(event_id__in=ids).values_list("handler", "event_id"))
        for event_id, envelope in zip(ids, chunk, strict=True):
            for service in services:
                subscription = registry.subscription_for(service, envelope["source"], envelope["detail-type"])
                if subscription is not None and (subscription.handler_id, event_id) not in handled:
                    yield service, envelope


def plan_reconciliation(window: Window) -> Counter:
    """(service, detail-type) -> how many events reconcile() would deliver again."""
    return Counter((service, envelope["detail-type"]) for service, envelope in unprocessed(window))


def reconcile(*, window: Window | None = None) -> Counter:
    """Deliver every event of the window (default: the retention window) that a subscribing service has
    not processed to that service's queue again; (service, detail-type) -> events sent."""
    window = window or retention_window()
    name = topology.prefixed(f"reconcile-{timezone.now():%Y%m%d-%H%M%S}")[:64]
    sender = _QueueSender(services=registry.services(), name=name)
    for service, envelope in unprocessed(window):
        sender.send(service, envelope)
    sent = sender.flush_all()
    logger.info("reconcile %s: delivered %d unprocessed event(s) again", name, sum(sent.values()))
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
