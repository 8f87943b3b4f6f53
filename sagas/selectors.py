"""Reads of the orchestrated saga: an order's execution, as Step Functions reports it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from eventbus import aws

from . import services


@dataclass(frozen=True)
class ExecutionSummary:
    arn: str
    status: str  # RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, or NOT_STARTED
    state: str  # the current state, or the last one entered
    started_at: datetime | None
    stopped_at: datetime | None
    console_url: str
    error: str = ""


def console_url(arn: str) -> str:
    region = settings.AWS_REGION
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}"


def execution_history(*, order_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """Every history event of the order's execution, oldest first (raises ClientError if none)."""
    client = aws.client("stepfunctions")
    paginator = client.get_paginator("get_execution_history")
    return [
        event for page in paginator.paginate(executionArn=services.execution_arn(order_id)) for event in page["events"]
    ]


def _last_state(history: list[dict[str, Any]]) -> str:
    for event in reversed(history):
        details = event.get("stateEnteredEventDetails")
        if details:
            return details["name"]
    return ""


def execution_running(*, order_id: uuid.UUID | str) -> bool:
    """Whether the order's execution is running: False if it ended or never started. Raises what AWS
    raises otherwise, so that a caller never takes "could not ask" for "not running"."""
    try:
        described = aws.client("stepfunctions").describe_execution(executionArn=services.execution_arn(order_id))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return False
        raise
    return described["status"] == "RUNNING"


def execution_summary(*, order_id: uuid.UUID | str) -> ExecutionSummary | None:
    """The order's execution, or None when there is none to show (the choreography runs the saga)."""
    if settings.ORDER_SAGA != "stepfunctions":
        return None
    try:
        arn = services.execution_arn(order_id)
    except (BotoCoreError, ClientError) as exc:
        return ExecutionSummary("", "UNKNOWN", "", None, None, "", aws.explain(exc))
    try:
        described = aws.client("stepfunctions").describe_execution(executionArn=arn)
        history = execution_history(order_id=order_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return ExecutionSummary(arn, "NOT_STARTED", "", None, None, console_url(arn))
        return ExecutionSummary(arn, "UNKNOWN", "", None, None, console_url(arn), aws.explain(exc))
    except BotoCoreError as exc:
        return ExecutionSummary(arn, "UNKNOWN", "", None, None, console_url(arn), aws.explain(exc))
    return ExecutionSummary(
        arn=arn,
        status=described["status"],
        state=_last_state(history),
        started_at=described.get("startDate"),
        stopped_at=described.get("stopDate"),
        console_url=console_url(arn),
    )
