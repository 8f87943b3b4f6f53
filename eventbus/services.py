"""Operator writes of the event plumbing: moving dead letters back to their queue, pruning stored
metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from . import aws, topology
from .models import DeliveryFailure, MetricBucket, MetricCount
from .sweeps import delete_in_batches

logger = logging.getLogger(__name__)


@dataclass
class RedriveReport:
    failed: int = 0  # not sent back: they stay in the DLQ
    moved_message_ids: list[str] = field(default_factory=list)
    # Sent back, but the DLQ refused to delete them (a receipt handle that expired, say): a copy is in
    # each queue, and the next redrive sends them again. Event handlers skip the second copy by its
    # event id; a Celery task would run twice.
    left_in_dlq_message_ids: list[str] = field(default_factory=list)
    stopped: str = ""  # why AWS stopped the redrive part-way, if it did

    @property
    def moved(self) -> int:
        return len(self.moved_message_ids)

    def problems(self, queue: topology.ServiceQueue | topology.TaskQueue) -> list[str]:
        """What went wrong, one clause each, for the operator."""
        problems = []
        if self.failed:
            problems.append(f"{self.failed} message(s) could not be moved; they stay in {queue.dlq_name}")
        if self.left_in_dlq_message_ids:
            problems.append(
                f"{len(self.left_in_dlq_message_ids)} message(s) were sent back to {queue.name} but could not be "
                f"deleted from {queue.dlq_name}, so a copy is in each: {', '.join(self.left_in_dlq_message_ids)}"
            )
        if self.stopped:
            problems.append(f"stopped part-way: {self.stopped}")
        return problems


def redrive_dead_letters(*, queue: topology.ServiceQueue | topology.TaskQueue, max_messages: int) -> RedriveReport:
    """Move up to `max_messages` from a queue's DLQ back to the queue, logging each one.

    Receive, send, then delete: works on AWS and on moto, which has no StartMessageMoveTask. A crash
    between send and delete leaves a copy in both; the consumer's eventId dedupe absorbs it. An AWS
    error part-way stops the redrive, and the report says what moved before it.
    """
    sqs = aws.client("sqs")
    source_url = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=queue.dlq_name)["QueueUrl"]
    report = RedriveReport()
    try:
        while (done := report.moved + report.failed + len(report.left_in_dlq_message_ids)) < max_messages:
            messages = sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=min(10, max_messages - done),
                VisibilityTimeout=60,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                break
            _move_batch(sqs, messages, queue=queue, source_url=source_url, dlq_url=dlq_url, report=report)
    except (BotoCoreError, ClientError) as exc:
        report.stopped = aws.explain(exc)
        logger.error("redrive %s stopped after %d message(s): %s", queue.dlq_name, report.moved, report.stopped)
    # DeliveryFailure is a log, not an evented model: a bulk update records no event.
    DeliveryFailure.objects.filter(message_id__in=report.moved_message_ids).update(redriven_at=timezone.now())
    return report


def _move_batch(
    sqs,
    messages: list[dict],
    *,
    queue: topology.ServiceQueue | topology.TaskQueue,
    source_url: str,
    dlq_url: str,
    report: RedriveReport,
) -> None:
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
        logger.error("redrive %s: message %s not moved: %s", queue.dlq_name, by_id[failure["Id"]]["MessageId"], failure)
    copied = [by_id[success["Id"]] for success in sent.get("Successful", [])]
    if not copied:
        return
    # Counted as left in the DLQ until its delete succeeds: an error in the delete itself leaves them so.
    report.left_in_dlq_message_ids += [message["MessageId"] for message in copied]
    deleted = sqs.delete_message_batch(
        QueueUrl=dlq_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(copied)]
    )
    for failure in deleted.get("Failed", []):
        logger.error(
            "redrive %s -> %s: message %s sent back but not deleted from the DLQ: %s",
            queue.dlq_name,
            queue.name,
            copied[int(failure["Id"])]["MessageId"],
            failure,
        )
    for success in deleted.get("Successful", []):
        message_id = copied[int(success["Id"])]["MessageId"]
        report.left_in_dlq_message_ids.remove(message_id)
        report.moved_message_ids.append(message_id)
        logger.info("redrive %s -> %s: message %s", queue.dlq_name, queue.name, message_id)


def prune_metrics(*, older_than: timedelta | None = None) -> int:
    """Delete stored minutes past METRICS_RETENTION_DAYS; CloudWatch keeps its own history."""
    cutoff = timezone.now() - (older_than or timedelta(days=settings.METRICS_RETENTION_DAYS))
    return sum(
        delete_in_batches(sweep="prune-metrics", queryset=model.objects.filter(minute__lt=cutoff))
        for model in (MetricCount, MetricBucket)
    )
