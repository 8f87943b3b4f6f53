"""Alarm definitions: one list, in code, that provisioning turns into CloudWatch alarms and that the
event-flow dashboard evaluates itself (moto never evaluates alarms, and a laptop has no CloudWatch).

Each definition names the CloudWatch metric (or metric math) it watches and a `local` reading of the
same figure from what shopbus can see directly: queue attributes and its own database. What each alarm
means, and what an operator does when it fires, is in docs/observability.md.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings

from eventbus import topology
from eventbus.metrics import NAMESPACE, Metric
from eventbus.provisioning import Action, Provisioner

FAILED_RESULTS = ("failed", "malformed", "unroutable")
ALL_RESULTS = ("processed", "duplicate", *FAILED_RESULTS)


class AlarmState(StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
}


@dataclass(frozen=True)
class Readings:
    """What the local evaluation reads, gathered once per dashboard render (a bounded set of calls)."""

    dlq_depths: dict[str, int]  # DLQ name -> messages
    oldest_ages: dict[str, float]  # service -> seconds the oldest unhandled delivery has waited
    outbox_backlog_age: float  # seconds
    results: dict[str, dict[str, int]]  # service -> result -> deliveries in the alarm period
    skipped_items: int = 0  # items periodic sweeps are skipping now (SweepFailure rows)


@dataclass(frozen=True)
class AlarmDefinition:
    key: str  # unprefixed, stable: the alarm's name is <prefix>shopbus-<key>
    title: str
    description: str
    threshold: float
    unit: str
    local: Callable[[Readings], float | None] = field(compare=False)
    metric: dict[str, Any] | None = None  # a single metric: Namespace, MetricName, Dimensions, Statistic
    metric_math: list[dict[str, Any]] | None = None  # or metric math queries, the last one returning data
    comparison: str = "GreaterThanThreshold"
    period: int = 60
    evaluation_periods: int = 1
    treat_missing_data: str = "notBreaching"
    runbook: str = ""  # the anchor of its section in docs/observability.md

    @property
    def name(self) -> str:
        return topology.prefixed(f"shopbus-{self.key}")

    def state_for(self, value: float | None) -> AlarmState:
        if value is None:
            return AlarmState.OK if self.treat_missing_data == "notBreaching" else AlarmState.INSUFFICIENT_DATA
        return AlarmState.ALARM if _COMPARE[self.comparison](value, self.threshold) else AlarmState.OK

    def put_request(self, *, actions: list[str], tags: list[dict[str, str]]) -> dict[str, Any]:
        """The PutMetricAlarm request for this definition."""
        request: dict[str, Any] = {
            "AlarmName": self.name,
            "AlarmDescription": f"{self.description} Runbook: docs/observability.md#{self.runbook}",
            "ActionsEnabled": bool(actions),
            "AlarmActions": actions,
            "OKActions": actions,
            "EvaluationPeriods": self.evaluation_periods,
            "Threshold": float(self.threshold),
            "ComparisonOperator": self.comparison,
            "TreatMissingData": self.treat_missing_data,
            "Tags": tags,
        }
        if self.metric_math is not None:
            request["Metrics"] = self.metric_math
        else:
            request.update(self.metric or {})
            request["Period"] = self.period
        return request


def _sqs_metric(name: str, queue_name: str) -> dict[str, Any]:
    return {
        "Namespace": "AWS/SQS",
        "MetricName": name,
        "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
        "Statistic": "Maximum",
    }


def _failure_rate_math(service: str, period: int) -> list[dict[str, Any]]:
    queries = [
        {
            "Id": f"r_{result}",
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": str(Metric.PROCESSING_RESULT),
                    "Dimensions": [{"Name": "ServiceName", "Value": service}, {"Name": "Result", "Value": result}],
                },
                "Period": period,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }
        for result in ALL_RESULTS
    ]
    failed = " + ".join(f"FILL(r_{result}, 0)" for result in FAILED_RESULTS)
    every = " + ".join(f"FILL(r_{result}, 0)" for result in ALL_RESULTS)
    queries.append(
        {
            "Id": "failure_rate",
            "Expression": f"({failed}) / ({every})",
            "Label": f"{service} handler failure rate",
            "ReturnData": True,
        }
    )
    return queries


def failure_rate(counts: dict[str, int]) -> float | None:
    total = sum(counts.values())
    return sum(counts.get(result, 0) for result in FAILED_RESULTS) / total if total else None


def definitions() -> list[AlarmDefinition]:
    """Every alarm, derived from the topology and settings."""
    alarms = []
    for queue in topology.consuming_queues():
        alarms.append(
            AlarmDefinition(
                key=f"{queue.service}-dead-letters",
                title=f"{queue.service}: messages in its DLQ",
                description=f"A message in {queue.dlq_name} failed {queue.service}'s handler too often.",
                threshold=settings.ALARM_DLQ_MESSAGES,
                unit="messages",
                metric=_sqs_metric("ApproximateNumberOfMessagesVisible", queue.dlq_name),
                local=lambda readings, name=queue.dlq_name: readings.dlq_depths.get(name),
                runbook="messages-in-a-dlq",
            )
        )
        alarms.append(
            AlarmDefinition(
                key=f"{queue.service}-queue-age",
                title=f"{queue.service}: oldest message age",
                description=f"The oldest message in {queue.name} has waited too long: {queue.service} is behind.",
                threshold=settings.ALARM_QUEUE_AGE_SECONDS,
                unit="s",
                metric=_sqs_metric("ApproximateAgeOfOldestMessage", queue.name),
                local=lambda readings, service=queue.service: readings.oldest_ages.get(service),
                runbook="a-queue-is-falling-behind",
            )
        )
        alarms.append(
            AlarmDefinition(
                key=f"{queue.service}-failure-rate",
                title=f"{queue.service}: handler failure rate",
                description=f"Too many of {queue.service}'s deliveries failed, were malformed or unroutable.",
                threshold=settings.ALARM_FAILURE_RATE,
                unit="ratio",
                metric_math=_failure_rate_math(queue.service, settings.ALARM_PERIOD_SECONDS),
                local=lambda readings, service=queue.service: failure_rate(readings.results.get(service, {})),
                period=settings.ALARM_PERIOD_SECONDS,
                runbook="handler-failure-rate",
            )
        )
    alarms.append(
        AlarmDefinition(
            key="delivery-dead-letters",
            title="EventBridge could not deliver",
            description=f"EventBridge gave up delivering events to a queue ({topology.target_dlq_name()}).",
            threshold=settings.ALARM_DLQ_MESSAGES,
            unit="messages",
            metric=_sqs_metric("ApproximateNumberOfMessagesVisible", topology.target_dlq_name()),
            local=lambda readings: readings.dlq_depths.get(topology.target_dlq_name()),
            runbook="messages-in-a-dlq",
        )
    )
    tasks = topology.task_queue()
    if tasks is not None:
        alarms.append(
            AlarmDefinition(
                key="tasks-dead-letters",
                title="tasks: messages in Celery's DLQ",
                description=f"A task message in {tasks.dlq_name} was received too often without being "
                "acknowledged: it kills or hangs its worker.",
                threshold=settings.ALARM_DLQ_MESSAGES,
                unit="messages",
                metric=_sqs_metric("ApproximateNumberOfMessagesVisible", tasks.dlq_name),
                local=lambda readings, name=tasks.dlq_name: readings.dlq_depths.get(name),
                runbook="messages-in-a-dlq",
            )
        )
    alarms.append(
        AlarmDefinition(
            key="outbox-backlog-age",
            title="Outbox backlog age",
            description="Committed events are waiting to be published: the relay or the bus is failing.",
            threshold=settings.ALARM_OUTBOX_AGE_SECONDS,
            unit="s",
            metric={"Namespace": NAMESPACE, "MetricName": str(Metric.OUTBOX_BACKLOG_AGE), "Statistic": "Maximum"},
            local=lambda readings: readings.outbox_backlog_age,
            # Every worker sends this gauge at each flush, even when it is 0: silence means no worker
            # is relaying, which is the failure this alarm is for.
            treat_missing_data="breaching",
            runbook="the-outbox-is-not-draining",
        )
    )
    alarms.append(
        AlarmDefinition(
            key="sweep-skipped-items",
            title="Periodic sweeps skipping items",
            description="A periodic sweep keeps failing on an item (a row it cannot read or handle) and skips it.",
            threshold=0,
            unit="items",
            metric={"Namespace": NAMESPACE, "MetricName": str(Metric.SWEEP_ITEM_FAILED), "Statistic": "Sum"},
            local=lambda readings: readings.skipped_items,
            period=settings.ALARM_PERIOD_SECONDS,
            runbook="a-sweep-skips-an-item",
        )
    )
    return alarms


# --- provisioning ---------------------------------------------------------------------------------

# The fields of DescribeAlarms that must match the definition for an alarm to be left alone.
_COMPARED = (
    "AlarmDescription",
    "ActionsEnabled",
    "AlarmActions",
    "OKActions",
    "EvaluationPeriods",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "Period",
    "Metrics",
)


def _comparable(alarm: dict[str, Any]) -> str:
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in sorted(value.items()) if v not in (None, [], "")}
        if isinstance(value, list):
            return [clean(item) for item in value]
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return float(value)
        return value

    return json.dumps({key: clean(alarm.get(key)) for key in _COMPARED if alarm.get(key) not in (None, [], "")})


class AlarmProvisioning:
    """Creates, updates and removes shopbus's CloudWatch alarms with the rest of provision_aws."""

    def _ours(self, provisioner: Provisioner) -> dict[str, dict[str, Any]]:
        paginator = provisioner.cloudwatch.get_paginator("describe_alarms")
        alarms: dict[str, dict[str, Any]] = {}
        for page in paginator.paginate(AlarmNamePrefix=topology.prefixed("shopbus-")):
            for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                alarms[alarm["AlarmName"]] = alarm
        return alarms

    def apply(self, provisioner: Provisioner) -> None:
        actions = [settings.ALARM_SNS_TOPIC_ARN] if settings.ALARM_SNS_TOPIC_ARN else []
        tags = [{"Key": key, "Value": value} for key, value in sorted(provisioner.tags.items())]
        existing = self._ours(provisioner)
        wanted = definitions()
        for definition in wanted:
            request = definition.put_request(actions=actions, tags=tags)
            current = existing.get(definition.name)
            if current is not None and _comparable(current) == _comparable(request):
                continue
            action = Action.CREATE if current is None else Action.UPDATE
            if provisioner.change(action, "alarm", definition.name, f"> {definition.threshold:g} {definition.unit}"):
                provisioner.cloudwatch.put_metric_alarm(**request)
        stale = sorted(set(existing) - {definition.name for definition in wanted})
        if stale and provisioner.change(Action.DELETE, "alarm", ", ".join(stale), "no longer defined"):
            provisioner.cloudwatch.delete_alarms(AlarmNames=stale)

    def teardown(self, provisioner: Provisioner) -> None:
        try:
            names = sorted(self._ours(provisioner))
        except ClientError:
            names = []
        for name in names:
            provisioner.change(Action.DELETE, "alarm", name)
        if names and not provisioner.dry_run:
            provisioner.cloudwatch.delete_alarms(AlarmNames=names)
