"""Operator writes of the event plumbing: moving dead letters back to their queue, pruning stored
metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from . import aws, topology
from .models import DeliveryFailure, MetricBucket, MetricCount
from .sweeps import delete_in_batches

logger = logging.getLogger(__name__)


@dataclass
class RedriveReport:
    failed: int = 0
    moved_message_ids: list[str] = field(default_factory=list)

    @property
    def moved(self) -> int:
        return len(self.moved_message_ids)


def redrive_dead_letters(*, queue: topology.ServiceQueue | topology.TaskQueue, max_messages: int) -> RedriveReport:
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
        report.moved_message_ids += [message["MessageId"] for message in moved]
    # DeliveryFailure is a log, not an evented model: a bulk update records no event.
    DeliveryFailure.objects.filter(message_id__in=report.moved_message_ids).update(redriven_at=timezone.now())
    return report


def prune_metrics(*, older_than: timedelta | None = None) -> int:
    """Delete stored minutes past METRICS_RETENTION_DAYS; CloudWatch keeps its own history."""
    cutoff = timezone.now() - (older_than or timedelta(days=settings.METRICS_RETENTION_DAYS))
    return sum(
        delete_in_batches(sweep="prune-metrics", queryset=model.objects.filter(minute__lt=cutoff))
        for model in (MetricCount, MetricBucket)
    )
