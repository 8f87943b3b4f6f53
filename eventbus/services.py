"""Writes of the event plumbing: recording outbox rows and relaying them to EventBridge."""

from __future__ import annotations

import contextvars
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import aws, topology
from .catalogue import EventType
from .models import EventedModel, OutboxEvent
from .validation import CURRENT_SCHEMA_VERSION, validate_detail

logger = logging.getLogger(__name__)

MAX_ENTRIES_PER_PUT = 10
MAX_BYTES_PER_PUT = 256 * 1024
CLAIM_LEASE = timedelta(seconds=60)
# PutEvents per-entry error codes that a later attempt can succeed with; any other code is final.
RETRYABLE_ERROR_CODES = {"InternalFailure", "InternalException", "ThrottlingException", "ServiceUnavailable"}

_causation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("causation_id", default=None)


class EventTooLarge(ValueError):
    pass


@contextmanager
def caused_by(event_id: str) -> Iterator[None]:
    """Events recorded inside this block name `event_id` as their causationId."""
    token = _causation_id.set(str(event_id))
    try:
        yield
    finally:
        _causation_id.reset(token)


def entry_size(*, source: str, detail_type: str, detail_json: str) -> int:
    """Size of one PutEvents entry as EventBridge counts it (the 14 bytes are for Time)."""
    return 14 + len(source.encode()) + len(detail_type.encode()) + len(detail_json.encode())


def _build_outbox_row(*, event_type: EventType, data: dict[str, Any], correlation_id: str) -> OutboxEvent:
    event_id = uuid.uuid4()
    occurred_at = timezone.now()
    detail = {
        "metadata": {
            "eventId": str(event_id),
            "schemaVersion": CURRENT_SCHEMA_VERSION,
            "occurredAt": occurred_at.isoformat().replace("+00:00", "Z"),
            "correlationId": correlation_id,
            "causationId": _causation_id.get(),
        },
        "data": data,
    }
    validate_detail(event_type, detail)
    size = entry_size(source=event_type.source, detail_type=event_type.detail_type, detail_json=_dumps(detail))
    if size > MAX_BYTES_PER_PUT:
        raise EventTooLarge(f"{event_type}: {size} bytes is over EventBridge's {MAX_BYTES_PER_PUT} byte limit")
    return OutboxEvent(
        id=event_id,
        source=event_type.source,
        detail_type=event_type.detail_type,
        detail=detail,
        correlation_id=correlation_id,
        created_at=occurred_at,
        next_attempt_at=occurred_at,
    )


def write_recorded_events(*, instance: EventedModel) -> None:
    """Post-save hook of evented models: the recorded events become outbox rows in the same transaction."""
    recorded = instance.pop_recorded_events()
    if not recorded:
        return
    using = instance._state.db
    rows = [
        _build_outbox_row(event_type=event.event_type, data=event.data, correlation_id=event.correlation_id)
        for event in recorded
    ]
    OutboxEvent.objects.using(using).bulk_create(rows)
    transaction.on_commit(wake_relay, using=using, robust=True)


_local_relay_waker: Callable[[], None] | None = None


def set_local_relay_waker(waker: Callable[[], None] | None) -> None:
    """A worker that runs its own relay thread registers its wake-up here (see consumer.RelayThread)."""
    global _local_relay_waker
    _local_relay_waker = waker


def wake_relay() -> None:
    """Relay now. Best effort: beat runs the relay periodically anyway.

    Inside a worker with a relay thread this is an in-process signal; elsewhere (the web server) it
    is a Celery task. Sending a broker message per commit from the worker would put as many extra
    SQS round trips on the bus as the events themselves.
    """
    if _local_relay_waker is not None:
        _local_relay_waker()
        return
    from .tasks import relay_outbox

    relay_outbox.apply_async(retry=False)


def _dumps(detail: dict[str, Any]) -> str:
    return json.dumps(detail, separators=(",", ":"), sort_keys=True)


@dataclass
class RelayReport:
    published: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def relay_pending(*, limit: int = 500) -> RelayReport:
    """Publish due PENDING outbox rows with PutEvents, in batches of at most 10 entries and 256 KB."""
    report = RelayReport()
    rows = _claim_due_rows(limit=limit)
    for batch in _batches(rows):
        _publish_batch(batch, report)
    if rows:
        logger.info(
            "outbox relay: published=%d retrying=%d failed=%d", report.published, report.retrying, report.failed
        )
    return report


def _claim_due_rows(*, limit: int) -> list[OutboxEvent]:
    # Claim in a short transaction and publish outside it: no row lock or SQLite write lock is held
    # across a network call. skip_locked keeps concurrent relays off each other's rows on PostgreSQL;
    # on SQLite the IMMEDIATE transaction serialises the claim instead.
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(status=OutboxEvent.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .order_by("created_at", "id")[:limit]
        )
        for row in rows:
            row.claimed_until = now + CLAIM_LEASE
        OutboxEvent.objects.bulk_update(rows, ["claimed_until"])
    return rows


def _batches(rows: list[OutboxEvent]) -> Iterator[list[tuple[OutboxEvent, dict[str, Any]]]]:
    batch: list[tuple[OutboxEvent, dict[str, Any]]] = []
    batch_bytes = 0
    bus = topology.bus_name()
    for row in rows:
        detail_json = _dumps(row.detail)
        size = entry_size(source=row.source, detail_type=row.detail_type, detail_json=detail_json)
        if batch and (len(batch) == MAX_ENTRIES_PER_PUT or batch_bytes + size > MAX_BYTES_PER_PUT):
            yield batch
            batch, batch_bytes = [], 0
        entry = {
            "Source": row.source,
            "DetailType": row.detail_type,
            "Detail": detail_json,
            "EventBusName": bus,
            "Time": row.created_at,
        }
        batch.append((row, entry))
        batch_bytes += size
    if batch:
        yield batch


def _publish_batch(batch: list[tuple[OutboxEvent, dict[str, Any]]], report: RelayReport) -> None:
    rows = [row for row, _ in batch]
    now = timezone.now()
    try:
        response = aws.client("events").put_events(Entries=[entry for _, entry in batch])
        results = response["Entries"]
    except (BotoCoreError, ClientError) as exc:
        error = f"PutEvents failed: {exc}"
        report.errors.append(error)
        logger.warning("outbox relay: %s (%d events will be retried)", error, len(rows))
        results = [{"ErrorCode": "CallFailed", "ErrorMessage": str(exc)} for _ in rows]
    for row, result in zip(rows, results, strict=True):
        row.attempts += 1
        row.claimed_until = None
        if result.get("EventId"):
            row.status = OutboxEvent.Status.PUBLISHED
            row.event_bridge_id = result["EventId"]
            row.published_at = now
            row.last_error = ""
            report.published += 1
            continue
        code = result.get("ErrorCode", "Unknown")
        row.last_error = f"{code}: {result.get('ErrorMessage', '')}".strip()
        if code in RETRYABLE_ERROR_CODES or code == "CallFailed":
            row.next_attempt_at = now + _backoff(row.attempts)
            report.retrying += 1
        else:
            row.status = OutboxEvent.Status.FAILED
            report.failed += 1
            logger.error("outbox relay: event %s %s rejected for good: %s", row.id, row.detail_type, row.last_error)
    OutboxEvent.objects.bulk_update(
        rows,
        ["attempts", "claimed_until", "status", "event_bridge_id", "published_at", "last_error", "next_attempt_at"],
    )


def _backoff(attempts: int) -> timedelta:
    ceiling = min(settings.OUTBOX_MAX_BACKOFF_SECONDS, 2 ** min(attempts, 20))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # jitter spreads a thundering herd


def requeue_failed_events(*, event_ids: list[str]) -> int:
    """Send FAILED rows round again (after whatever made EventBridge reject them is fixed)."""
    with transaction.atomic():
        rows = list(OutboxEvent.objects.select_for_update().filter(pk__in=event_ids, status=OutboxEvent.Status.FAILED))
        for row in rows:
            row.status = OutboxEvent.Status.PENDING
            row.next_attempt_at = timezone.now()
        OutboxEvent.objects.bulk_update(rows, ["status", "next_attempt_at"])
    if rows:
        transaction.on_commit(wake_relay, robust=True)
    return len(rows)


@dataclass
class RedriveReport:
    moved: int = 0
    failed: int = 0


def redrive_dead_letters(*, queue: topology.ServiceQueue, max_messages: int) -> RedriveReport:
    """Move up to `max_messages` from a queue's DLQ back to the queue, logging each one.

    Receive, send, then delete: works on AWS and on moto, which has no StartMessageMoveTask. A crash
    between send and delete leaves a copy in both; the consumer's eventId dedupe absorbs it.
    """
    sqs = aws.client("sqs")
    source_url = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=queue.dlq_name)["QueueUrl"]
    report = RedriveReport()
    while report.moved + report.failed < max_messages:
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(10, max_messages - report.moved - report.failed),
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        by_id = {str(index): message for index, message in enumerate(messages)}
        entries = []
        for entry_id, message in by_id.items():
            entry = {"Id": entry_id, "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
        for failure in sent.get("Failed", []):
            report.failed += 1
            logger.error(
                "redrive %s: message %s not moved: %s", queue.dlq_name, by_id[failure["Id"]]["MessageId"], failure
            )
        moved = [by_id[success["Id"]] for success in sent.get("Successful", [])]
        if moved:
            sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(moved)],
            )
        for message in moved:
            logger.info("redrive %s -> %s: message %s", queue.dlq_name, queue.name, message["MessageId"])
        report.moved += len(moved)
    return report
