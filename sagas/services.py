"""Writes of the orchestrated saga: starting an order's execution, and the reply outbox.

Services answer a command by calling `record_reply` inside the transaction that did the step's work.
The reply is sent after that transaction commits (right away, and by a periodic sweep for anything a
dead worker left behind), so the state machine hears exactly the committed outcome, at least once.
A reply the execution no longer waits for (TaskTimedOut, InvalidToken, TaskDoesNotExist) is logged
and dropped, never retried forever.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from datetime import timedelta
from functools import cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from eventbus import aws, topology
from eventbus.events import ReceivedEvent
from eventbus.sweeps import Sweep

from .models import SagaReply

logger = logging.getLogger(__name__)

# Answers the state machine will never take again: the task is over.
FINAL_REPLY_ERRORS = {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}
CLAIM_LEASE = timedelta(seconds=30)


@cache
def _account_and_partition() -> tuple[str, str]:
    identity = aws.client("sts").get_caller_identity()
    return identity["Account"], identity["Arn"].split(":")[1]


def state_machine_arn() -> str:
    account, partition = _account_and_partition()
    return f"arn:{partition}:states:{settings.AWS_REGION}:{account}:stateMachine:{topology.state_machine_name()}"


def execution_arn(order_id: uuid.UUID | str) -> str:
    account, partition = _account_and_partition()
    name = topology.state_machine_name()
    return f"arn:{partition}:states:{settings.AWS_REGION}:{account}:execution:{name}:{order_id}"


def start_execution(*, order_id: uuid.UUID, order: dict[str, Any]) -> str:
    """Start the order's execution, named after the order, so a repeated start finds the first one
    (ExecutionAlreadyExists is done, not an error). Returns the execution ARN."""
    try:
        response = aws.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn(), name=str(order_id), input=json.dumps({"order": order})
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
        logger.info("saga for order %s already started", order_id)
        return execution_arn(order_id)
    logger.info("saga for order %s started", order_id)
    return response["executionArn"]


# --- the reply outbox -------------------------------------------------------------------------------


def record_reply(
    *,
    task_token: str,
    order_id: uuid.UUID,
    command: str,
    succeeded: bool,
    output: dict[str, Any] | None = None,
    error: str = "",
    cause: str = "",
) -> SagaReply:
    """Keep the answer with the step's work; it is sent once the transaction commits."""
    reply, created = SagaReply.objects.get_or_create(
        task_token=task_token,
        defaults={
            "order_id": order_id,
            "command": command,
            "succeeded": succeeded,
            "output": output or {},
            "error": error[:100],
            "cause": cause[:500],
        },
    )
    if created:
        transaction.on_commit(lambda: send_replies(reply_ids=[reply.pk]), robust=True)
    return reply


def answer(
    command: ReceivedEvent, *, succeeded: bool, output: dict[str, Any] | None = None, error: str = "", cause: str = ""
) -> SagaReply:
    """A service's answer to a command it handled, kept with the step's work (see record_reply)."""
    return record_reply(
        task_token=command.data["taskToken"],
        order_id=command.order_id,
        command=command.event_type.detail_type,
        succeeded=succeeded,
        output=output,
        error=error,
        cause=cause,
    )


def send_pending_replies(*, limit: int = 200) -> int:
    """Send due PENDING replies (the sweep for anything a crash left behind). Returns how many went.
    A reply that cannot be read or sent is recorded and skipped (eventbus.sweeps); the claim's lease
    paces its retries."""
    now = timezone.now()
    return _claim_and_send(
        SagaReply.objects.filter(status=SagaReply.Status.PENDING, next_attempt_at__lte=now).order_by(
            "created_at", "pk"
        )[:limit]
    )


def send_replies(*, reply_ids: list[int]) -> int:
    return _claim_and_send(SagaReply.objects.filter(pk__in=reply_ids, status=SagaReply.Status.PENDING))


def _claim_and_send(due: QuerySet[SagaReply]) -> int:
    # Only ids are read under the lock, so a row the model cannot load fails alone, below.
    with transaction.atomic():
        ids = list(due.select_for_update(skip_locked=True).values_list("pk", flat=True))
        # SagaReply is not evented: a plain UPDATE is the claim.
        SagaReply.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now() + CLAIM_LEASE)
    sweep = Sweep("send-saga-replies")
    sent = 0
    for reply in sweep.load(SagaReply.objects.all(), ids):
        with sweep.item(reply.pk):
            sent += _send(reply)
    return sent


def _send(reply: SagaReply) -> bool:
    client = aws.client("stepfunctions")
    reply.attempts += 1
    try:
        if reply.succeeded:
            client.send_task_success(taskToken=reply.task_token, output=json.dumps(reply.output))
        else:
            client.send_task_failure(taskToken=reply.task_token, error=reply.error, cause=reply.cause)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reply.last_error = f"{code}: {exc}"[:2000]
        if code in FINAL_REPLY_ERRORS:
            reply.status = SagaReply.Status.DROPPED
            logger.warning(
                "saga reply %s for order %s dropped: the execution no longer waits for it (%s)",
                reply.command,
                reply.order_id,
                code,
            )
        else:
            reply.next_attempt_at = timezone.now() + _backoff(reply.attempts)
            logger.warning("saga reply %s for order %s not sent, will retry: %s", reply.command, reply.order_id, exc)
    except BotoCoreError as exc:
        reply.last_error = str(exc)[:2000]
        reply.next_attempt_at = timezone.now() + _backoff(reply.attempts)
        logger.warning("saga reply %s for order %s not sent, will retry: %s", reply.command, reply.order_id, exc)
    else:
        reply.status = SagaReply.Status.SENT
        reply.sent_at = timezone.now()
        reply.last_error = ""
    # SagaReply is not evented: a plain save is fine.
    reply.save(update_fields=["attempts", "status", "sent_at", "last_error", "next_attempt_at"])
    return reply.status == SagaReply.Status.SENT


def _backoff(attempts: int) -> timedelta:
    ceiling = min(300, 2 ** min(attempts, 10))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))
