"""Reads of the event plumbing: queue and DLQ depths, and what sits in a DLQ and why."""

from __future__ import annotations

import contextlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from . import aws, registry, topology
from .models import DeliveryFailure, ProcessedEvent

MAX_CONCURRENT_CALLS = 16  # within aws.client's connection pool


@dataclass(frozen=True)
class QueueDepth:
    service: str
    queue_name: str
    visible: int
    in_flight: int
    dlq_name: str
    dlq_depth: int


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    event_id: str
    detail_type: str
    receive_count: int
    reason: str
    body: str


def message_counts(queue_name: str) -> tuple[int, int]:
    """(visible, in flight) messages on a queue, as SQS approximates them."""
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def message_counts_of(queue_names: list[str]) -> dict[str, tuple[int, int]]:
    """message_counts of several queues, asked at once: a page showing every queue and DLQ waits for
    one queue's two round trips rather than for all thirty in a row (boto3 clients are thread-safe)."""
    if not queue_names:
        return {}
    aws.client("sqs")  # made once here, not by each thread racing to the cold cache
    with ThreadPoolExecutor(max_workers=min(MAX_CONCURRENT_CALLS, len(queue_names))) as pool:
        return dict(zip(queue_names, pool.map(message_counts, queue_names), strict=True))


@dataclass(frozen=True)
class BusDepths:
    queues: list[QueueDepth]
    target_dlq_depth: int
    # Celery's queue, (visible, in flight), and its DLQ; None when the broker is not SQS.
    task_queue: tuple[int, int] | None
    task_dlq_depth: int | None


def bus_depths() -> BusDepths:
    """Every queue's depth, asked at once: each service's queue and DLQ, the rule targets' DLQ, and
    Celery's queue and DLQ when the broker is SQS."""
    queues = [topology.SERVICE_QUEUES[service] for service in registry.services()]
    tasks = topology.task_queue()
    names = [name for queue in queues for name in (queue.name, queue.dlq_name)] + [topology.target_dlq_name()]
    if tasks is not None:
        names += [tasks.name, tasks.dlq_name]
    counts = message_counts_of(names)
    return BusDepths(
        queues=[
            QueueDepth(queue.service, queue.name, *counts[queue.name], queue.dlq_name, sum(counts[queue.dlq_name]))
            for queue in queues
        ],
        target_dlq_depth=sum(counts[topology.target_dlq_name()]),
        task_queue=None if tasks is None else counts[tasks.name],
        task_dlq_depth=None if tasks is None else sum(counts[tasks.dlq_name]),
    )


def _summarise(body: str) -> tuple[str, str]:
    try:
        envelope = json.loads(body)
        return str(envelope["detail"]["metadata"]["eventId"]), str(envelope.get("detail-type", ""))
    except (ValueError, KeyError, TypeError):
        return "", ""


def peek_dead_letters(*, queue_name: str, limit: int = 10) -> list[DeadLetter]:
    """Look at up to `limit` messages in a DLQ without taking them: each is made visible again at once."""
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    seen: dict[str, dict] = {}
    empty_polls = 0
    while len(seen) < limit and empty_polls < 2:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, limit - len(seen)),
            VisibilityTimeout=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        empty_polls = 0 if fresh else empty_polls + 1
        for message in fresh:
            seen[message["MessageId"]] = message
    reasons = {f.message_id: f for f in DeliveryFailure.objects.filter(message_id__in=list(seen))}
    letters = []
    for message_id, message in seen.items():
        event_id, detail_type = _summarise(message["Body"])
        failure = reasons.get(message_id)
        letters.append(
            DeadLetter(
                message_id=message_id,
                event_id=event_id or (failure.event_id if failure else ""),
                detail_type=detail_type or (failure.detail_type if failure else ""),
                receive_count=failure.receive_count if failure else 0,
                reason=failure.reason if failure else "unknown (no failure was recorded for this message)",
                body=message["Body"],
            )
        )
    return letters


@dataclass(frozen=True)
class FailureState:
    state: str  # "failing", "redriven" or "resolved"
    since: datetime


def failure_states(*, failures: list[DeliveryFailure]) -> dict[int, FailureState]:
    """Where each failing event stands: resolved once its queue's service has handled it since (a
    ProcessedEvent of one of that service's handlers), redriven if moved back from the DLQ after it
    last failed, failing otherwise. One query whatever the number of rows."""
    event_ids = set()
    for failure in failures:
        with contextlib.suppress(ValueError):
            event_ids.add(uuid.UUID(failure.event_id))
    handled: dict[tuple[str, str], datetime] = {}
    for handler, event_id, processed_at in ProcessedEvent.objects.filter(event_id__in=event_ids).values_list(
        "handler", "event_id", "processed_at"
    ):
        key = (handler.split(".", 1)[0], str(event_id))
        handled[key] = max(processed_at, handled.get(key, processed_at))
    states = {}
    for failure in failures:
        try:
            service = topology.queue_for(failure.queue_name).service
        except LookupError:
            service = ""
        resolved_at = handled.get((service, failure.event_id))
        if resolved_at is not None and resolved_at >= failure.first_failed_at:
            states[failure.pk] = FailureState("resolved", resolved_at)
        elif failure.redriven_at is not None and failure.redriven_at >= failure.last_failed_at:
            states[failure.pk] = FailureState("redriven", failure.redriven_at)
        else:
            states[failure.pk] = FailureState("failing", failure.last_failed_at)
    return states
