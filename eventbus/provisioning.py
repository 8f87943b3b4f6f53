"""Provision and tear down shopbus's AWS resources (docs/architecture.md, "Topology and provisioning").

Desired state is derived from `topology` (and so from the handler registry). Each resource is read,
compared and changed only where it differs, so a second run reports no changes. With dry_run the
plan is computed the same way and nothing is written.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from botocore.exceptions import ClientError
from django.conf import settings

from . import aws, registry, topology
from .metrics import NAMESPACE, Metric
from .patterns import validate_pattern

logger = logging.getLogger(__name__)

QUEUE_MISSING_CODES = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
TARGET_ID = "service-queue"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    SKIP = "skip"


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    name: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {self.name}" + (f" ({self.detail})" if self.detail else "")


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _canonical(value: Any) -> Any:
    """JSON-ish attribute values compared by meaning: key order and number-vs-string do not count."""
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_int=str, parse_float=str)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, int | float) else value


class AwsResources:
    """ARNs and names for one account and region."""

    def __init__(self) -> None:
        identity = aws.client("sts").get_caller_identity()
        self.account = identity["Account"]
        self.partition = identity["Arn"].split(":")[1]
        self.region = settings.AWS_REGION
        self.bus = topology.bus_name()

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

    @property
    def bus_arn(self) -> str:
        return self.arn("events", f"event-bus/{self.bus}")

    def rule_arn(self, rule_name: str) -> str:
        return self.arn("events", f"rule/{self.bus}/{rule_name}")

    def queue_arn(self, queue_name: str) -> str:
        return self.arn("sqs", queue_name)


class ProvisioningExtension(Protocol):
    """AWS resources that another room owns (alarms, a state machine) but provisioning applies and
    tears down with everything else. Registered at start-up, so the plumbing imports no room."""

    def apply(self, provisioner: Provisioner) -> None: ...

    def teardown(self, provisioner: Provisioner) -> None: ...


_extensions: list[ProvisioningExtension] = []


def register_extension(extension: ProvisioningExtension) -> None:
    if extension not in _extensions:
        _extensions.append(extension)


# A target with any of these delivers something other than the event's envelope.
EVENT_REWRITING_TARGET_FIELDS = ("Input", "InputPath", "InputTransformer")


class Provisioner:
    def __init__(self, *, dry_run: bool = False) -> None:
        self.dry_run = dry_run
        self.events = aws.client("events")
        self.sqs = aws.client("sqs")
        self.cloudwatch = aws.client("cloudwatch")
        self.names = AwsResources()
        self.tags = dict(settings.RESOURCE_TAGS)
        self.changes: list[Change] = []

    def change(self, action: Action, kind: str, name: str, detail: str = "") -> bool:
        """Record a change; True when it should also be applied."""
        self.changes.append(Change(action, kind, name, detail))
        logger.debug("%s%s", "[dry run] " if self.dry_run else "", self.changes[-1])
        return not self.dry_run

    # --- plan and apply -----------------------------------------------------------------------

    def apply(self) -> list[Change]:
        queues = topology.consuming_queues()
        # Refuse before touching AWS: EventBridge would reject an invalid pattern, and moto accepts it.
        for queue in queues:
            validate_pattern(registry.event_pattern(queue.service))
        validate_pattern(self.archive_settings()["EventPattern"])
        self.ensure_bus()
        self.ensure_queue(self.target_dlq_name, self.target_dlq_attributes(queues))
        for queue in queues:
            self.ensure_queue(queue.dlq_name, {"MessageRetentionPeriod": str(topology.DLQ_RETENTION_SECONDS)})
            self.ensure_queue(queue.name, self.queue_attributes(queue))
        tasks = topology.task_queue()
        if tasks is not None:
            self.ensure_queue(tasks.dlq_name, {"MessageRetentionPeriod": str(topology.DLQ_RETENTION_SECONDS)})
            self.ensure_queue(tasks.name, self.task_queue_attributes(tasks))
        for queue in queues:
            self.ensure_rule(queue)
            self.ensure_target(queue)
        self.remove_stale_rules({queue.rule_name for queue in queues})
        self.ensure_archive()
        self.ensure_dashboard(queues)
        for extension in _extensions:
            extension.apply(self)
        return self.changes

    @property
    def target_dlq_name(self) -> str:
        return topology.target_dlq_name()

    def _send_policy(self, queue_name: str, rule_names: list[str]) -> str:
        rule_arns = [self.names.rule_arn(name) for name in rule_names]
        statement = {
            "Sid": "EventBridgeRulesOnly",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": self.names.queue_arn(queue_name),
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns[0] if len(rule_arns) == 1 else rule_arns}},
        }
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, sort_keys=True)

    def queue_attributes(self, queue: topology.ServiceQueue) -> dict[str, str]:
        return {
            "VisibilityTimeout": str(queue.visibility_timeout),
            "MessageRetentionPeriod": str(queue.retention_seconds),
            "ReceiveMessageWaitTimeSeconds": str(queue.wait_seconds),
            "RedrivePolicy": self._redrive_policy(queue.dlq_name),
            "Policy": self._send_policy(queue.name, [queue.rule_name]),
        }

    def _redrive_policy(self, dlq_name: str) -> str:
        return json.dumps(
            {"deadLetterTargetArn": self.names.queue_arn(dlq_name), "maxReceiveCount": settings.SQS_MAX_RECEIVE_COUNT},
            sort_keys=True,
        )

    def task_queue_attributes(self, queue: topology.TaskQueue) -> dict[str, str]:
        return {
            "VisibilityTimeout": str(queue.visibility_timeout),
            "RedrivePolicy": self._redrive_policy(queue.dlq_name),
        }

    def target_dlq_attributes(self, queues: list[topology.ServiceQueue]) -> dict[str, str]:
        attributes = {"MessageRetentionPeriod": str(topology.DLQ_RETENTION_SECONDS)}
        if queues:
            attributes["Policy"] = self._send_policy(self.target_dlq_name, [queue.rule_name for queue in queues])
        return attributes

    def ensure_bus(self) -> None:
        try:
            self.events.describe_event_bus(Name=self.names.bus)
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            if self.change(Action.CREATE, "event bus", self.names.bus):
                self.events.create_event_bus(Name=self.names.bus, Tags=self._tag_list())
            return
        current = {
            t["Key"]: t["Value"] for t in self.events.list_tags_for_resource(ResourceARN=self.names.bus_arn)["Tags"]
        }
        tags_missing = not self.tags.items() <= current.items()
        if tags_missing and self.change(Action.UPDATE, "event bus", self.names.bus, "tags"):
            self.events.tag_resource(ResourceARN=self.names.bus_arn, Tags=self._tag_list())

    def _tag_list(self) -> list[dict[str, str]]:
        return [{"Key": key, "Value": value} for key, value in sorted(self.tags.items())]

    def _queue_url(self, name: str) -> str | None:
        try:
            return self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            if _error_code(exc) in QUEUE_MISSING_CODES:
                return None
            raise

    def ensure_queue(self, name: str, attributes: dict[str, str]) -> None:
        url = self._queue_url(name)
        if url is None:
            if self.change(Action.CREATE, "queue", name):
                self.sqs.create_queue(QueueName=name, Attributes=attributes, tags=self.tags)
            return
        current = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        drift = {key: value for key, value in attributes.items() if _canonical(current.get(key)) != _canonical(value)}
        if drift and self.change(Action.UPDATE, "queue", name, ", ".join(sorted(drift))):
            # Resend the policy with any change: moto's server drops a queue's policy when other
            # attributes are set without it (AWS keeps it; resending is harmless there).
            if "Policy" in attributes:
                drift["Policy"] = attributes["Policy"]
            self.sqs.set_queue_attributes(QueueUrl=url, Attributes=drift)
        current_tags = self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        if not self.tags.items() <= current_tags.items() and self.change(Action.UPDATE, "queue", name, "tags"):
            self.sqs.tag_queue(QueueUrl=url, Tags=self.tags)

    def ensure_rule(self, queue: topology.ServiceQueue) -> None:
        pattern = registry.event_pattern(queue.service)
        description = f"Events the {queue.service} service handles, derived from its handlers"
        desired = {"EventPattern": pattern, "State": "ENABLED", "Description": description}
        try:
            current = self.events.describe_rule(Name=queue.rule_name, EventBusName=self.names.bus)
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            current = None
        if current is None:
            if not self.change(Action.CREATE, "rule", queue.rule_name):
                return
        else:
            drift = [key for key, value in desired.items() if _canonical(current.get(key)) != _canonical(value)]
            if not drift or not self.change(Action.UPDATE, "rule", queue.rule_name, ", ".join(drift)):
                return
        self.events.put_rule(
            Name=queue.rule_name,
            EventBusName=self.names.bus,
            EventPattern=json.dumps(pattern, sort_keys=True),
            State="ENABLED",
            Description=description,
            **({"Tags": self._tag_list()} if current is None else {}),
        )

    def ensure_target(self, queue: topology.ServiceQueue) -> None:
        desired = {
            "Id": TARGET_ID,
            "Arn": self.names.queue_arn(queue.name),
            "RetryPolicy": {
                "MaximumRetryAttempts": topology.TARGET_MAX_RETRY_ATTEMPTS,
                "MaximumEventAgeInSeconds": topology.TARGET_MAX_EVENT_AGE_SECONDS,
            },
            "DeadLetterConfig": {"Arn": self.names.queue_arn(self.target_dlq_name)},
        }
        try:
            current = self.events.list_targets_by_rule(Rule=queue.rule_name, EventBusName=self.names.bus)["Targets"]
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            current = []  # the rule is only planned (dry run)
        ours = next((t for t in current if t["Id"] == TARGET_ID), None)
        stale = [t["Id"] for t in current if t["Id"] != TARGET_ID]
        if stale and self.change(Action.DELETE, "target", f"{queue.rule_name}/{','.join(stale)}"):
            self.events.remove_targets(Rule=queue.rule_name, EventBusName=self.names.bus, Ids=stale)
        # What we set, and what would rewrite the envelope every consumer parses (put_targets replaces a
        # target whole, so those go with the repair); any other field AWS reports is left out of it.
        compared = (*desired, *EVENT_REWRITING_TARGET_FIELDS)
        if ours is not None and _canonical({key: ours.get(key) for key in compared}) == _canonical(
            {key: desired.get(key) for key in compared}
        ):
            return
        if self.change(Action.CREATE if ours is None else "update", "target", f"{queue.rule_name}/{TARGET_ID}"):
            self.events.put_targets(Rule=queue.rule_name, EventBusName=self.names.bus, Targets=[desired])

    def _rules_on_bus(self) -> list[str]:
        try:
            paginator = self.events.get_paginator("list_rules")
            return [rule["Name"] for page in paginator.paginate(EventBusName=self.names.bus) for rule in page["Rules"]]
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return []
            raise

    def _our_rules_on_bus(self) -> list[str]:
        """Only rules named as provisioning names them; AWS-managed ones (the archive's) are not ours."""
        ours = {queue.rule_name for queue in topology.SERVICE_QUEUES.values()}
        return [rule for rule in self._rules_on_bus() if rule in ours]

    def remove_stale_rules(self, wanted: set[str]) -> None:
        """A service that no longer handles any event loses its rule: routing follows the code."""
        for rule in self._our_rules_on_bus():
            if rule not in wanted and self.change(Action.DELETE, "rule", rule, "no handler subscribes to it any more"):
                self._delete_rule(rule)

    def _delete_rule(self, rule: str) -> None:
        targets = self.events.list_targets_by_rule(Rule=rule, EventBusName=self.names.bus)["Targets"]
        if targets:
            self.events.remove_targets(Rule=rule, EventBusName=self.names.bus, Ids=[t["Id"] for t in targets])
        self.events.delete_rule(Name=rule, EventBusName=self.names.bus)

    def archive_settings(self) -> dict[str, Any]:
        return {
            "EventPattern": {"source": [{"prefix": "ecommerce."}]},
            "RetentionDays": settings.EVENT_ARCHIVE_RETENTION_DAYS,
        }

    def ensure_archive(self) -> None:
        name = topology.archive_name()
        desired = self.archive_settings()
        try:
            current = self.events.describe_archive(ArchiveName=name)
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            if self.change(Action.CREATE, "archive", name):
                self.events.create_archive(
                    ArchiveName=name,
                    EventSourceArn=self.names.bus_arn,
                    Description="Every ecommerce.* event, for replay",
                    EventPattern=json.dumps(desired["EventPattern"]),
                    RetentionDays=desired["RetentionDays"],
                )
            return
        drift = [key for key, value in desired.items() if _canonical(current.get(key)) != _canonical(value)]
        if drift and self.change(Action.UPDATE, "archive", name, ", ".join(drift)):
            self.events.update_archive(
                ArchiveName=name,
                EventPattern=json.dumps(desired["EventPattern"]),
                RetentionDays=desired["RetentionDays"],
            )

    def dashboard_body(self, queues: list[topology.ServiceQueue]) -> dict[str, Any]:
        region = settings.AWS_REGION

        def widget(title: str, metrics: list[list[Any]], stat: str) -> dict[str, Any]:
            return {
                "type": "metric",
                "width": 12,
                "height": 6,
                "properties": {"title": title, "region": region, "stat": stat, "period": 60, "metrics": metrics},
            }

        def p50_and_p99(metric: Metric, label: str) -> list[list[Any]]:
            return [
                [
                    NAMESPACE,
                    metric,
                    "ServiceName",
                    q.service,
                    {"stat": stat, "label": label.format(service=q.service, stat=stat)},
                ]
                for q in queues
                for stat in ("p50", "p99")
            ]

        return {
            "widgets": [
                widget(
                    "Events matched and delivered",
                    [["AWS/Events", "MatchedEvents", "EventBusName", self.names.bus]]
                    + [
                        ["AWS/Events", "Invocations", "RuleName", q.rule_name, "EventBusName", self.names.bus]
                        for q in queues
                    ]
                    + [
                        ["AWS/Events", "FailedInvocations", "RuleName", q.rule_name, "EventBusName", self.names.bus]
                        for q in queues
                    ],
                    "Sum",
                ),
                widget(
                    "Queue depth (backlog)",
                    [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q.name] for q in queues],
                    "Maximum",
                ),
                widget(
                    "Oldest message age, seconds (end-to-end lag)",
                    [["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", q.name] for q in queues],
                    "Maximum",
                ),
                widget(
                    "Dead-letter queue depth (errors)",
                    [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q.dlq_name] for q in queues]
                    + [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", self.target_dlq_name]]
                    + [
                        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", tasks.dlq_name]
                        for tasks in [topology.task_queue()]
                        if tasks is not None
                    ],
                    "Maximum",
                ),
                widget(
                    "Messages processed per minute",
                    [["AWS/SQS", "NumberOfMessagesDeleted", "QueueName", q.name] for q in queues],
                    "Sum",
                ),
                widget(
                    "Processing time per service, p50 and p99 (ms)",
                    p50_and_p99(Metric.PROCESSING_TIME, "{service} {stat}"),
                    "p99",
                ),
                widget(
                    "Deliveries by result",
                    [
                        [NAMESPACE, Metric.PROCESSING_RESULT, "ServiceName", q.service, "Result", result]
                        for q in queues
                        for result in ("processed", "duplicate", "failed", "malformed", "unroutable")
                    ],
                    "Sum",
                ),
                widget(
                    "End-to-end latency per hop (occurredAt to handler commit), p50 and p99 (ms)",
                    p50_and_p99(Metric.END_TO_END_LATENCY, "to {service} {stat}"),
                    "p99",
                ),
                widget(
                    "Outbox: publish lag p99 (ms), backlog age (s)",
                    [
                        [NAMESPACE, Metric.PUBLISH_LAG, {"stat": "p99", "label": "publish lag p99"}],
                        [NAMESPACE, Metric.OUTBOX_BACKLOG_AGE, {"stat": "Maximum", "label": "backlog age"}],
                    ],
                    "Maximum",
                ),
            ]
        }

    def ensure_dashboard(self, queues: list[topology.ServiceQueue]) -> None:
        name = topology.dashboard_name()
        desired = self.dashboard_body(queues)
        current = self._dashboard(name)
        if current != desired and self.change(Action.CREATE if current is None else "update", "dashboard", name):
            self.cloudwatch.put_dashboard(DashboardName=name, DashboardBody=json.dumps(desired))
        self._remove_legacy_dashboard()

    def _dashboard(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
        except ClientError as exc:
            if _error_code(exc) not in {"ResourceNotFound", "ResourceNotFoundException"}:
                raise
            return None

    def _remove_legacy_dashboard(self) -> None:
        """The dashboard named before names held the region, if every widget of it shows this region:
        then it is this region's, superseded. Another region's is left to that region's provisioning."""
        name = topology.legacy_dashboard_name()
        legacy = self._dashboard(name)
        if legacy is None:
            return
        regions = {widget.get("properties", {}).get("region") for widget in legacy.get("widgets", [])}
        if regions == {self.names.region} and self.change(Action.DELETE, "dashboard", name, "superseded"):
            self.cloudwatch.delete_dashboards(DashboardNames=[name])

    # --- teardown -----------------------------------------------------------------------------

    def teardown(self) -> list[Change]:
        """Remove exactly what apply() creates: the resources named by the topology, on our bus."""
        for extension in reversed(_extensions):
            extension.teardown(self)
        name = topology.dashboard_name()
        if self._dashboard(name) is not None and self.change(Action.DELETE, "dashboard", name):
            self.cloudwatch.delete_dashboards(DashboardNames=[name])
        self._remove_legacy_dashboard()
        archive = topology.archive_name()
        try:
            self.events.describe_archive(ArchiveName=archive)
            if self.change(Action.DELETE, "archive", archive):
                self.events.delete_archive(ArchiveName=archive)
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
        for rule in self._our_rules_on_bus():
            if self.change(Action.DELETE, "rule", rule):
                self._delete_rule(rule)
        queue_names = [self.target_dlq_name]
        for queue in [*topology.SERVICE_QUEUES.values(), *filter(None, [topology.task_queue()])]:
            queue_names += [queue.name, queue.dlq_name]
        for name in queue_names:
            url = self._queue_url(name)
            if url is None:
                continue
            tags = self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
            if tags.get("Project") != self.tags["Project"]:
                self.change(Action.SKIP, "queue", name, f"not tagged Project={self.tags['Project']}; left alone")
                continue
            if self.change(Action.DELETE, "queue", name):
                self.sqs.delete_queue(QueueUrl=url)
        try:
            self.events.describe_event_bus(Name=self.names.bus)
            if self.change(Action.DELETE, "event bus", self.names.bus):
                self.events.delete_event_bus(Name=self.names.bus)
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
        return self.changes
