"""Reads of the event plumbing: queue and DLQ depths, and what sits in a DLQ and why."""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import aws, registry, topology
from .models import DeliveryFailure


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


def queue_depths() -> list[QueueDepth]:
    depths = []
    for service in registry.services():
        queue = topology.SERVICE_QUEUES[service]
        visible, in_flight = message_counts(queue.name)
        dlq_visible, dlq_in_flight = message_counts(queue.dlq_name)
        depths.append(QueueDepth(service, queue.name, visible, in_flight, queue.dlq_name, dlq_visible + dlq_in_flight))
    return depths


def target_dlq_depth() -> int:
    return sum(message_counts(topology.target_dlq_name()))


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
