"""Celery's own broker queue gets a DLQ: a task message received again and again without being
acknowledged (it kills its worker) ends there, is listed, raises its alarm, and can be redriven."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from eventbus import aws, topology
from eventbus.provisioning import Provisioner
from observability import selectors as observability_selectors
from observability.alarms import AlarmState, definitions

pytestmark = pytest.mark.django_db


@pytest.fixture
def sqs_broker(settings):
    """The broker as the local stack and production configure it (the tests' default is in memory)."""
    settings.CELERY_BROKER_URL = "sqs://testing:testing@127.0.0.1:4566"


def url_of(name: str) -> str:
    return aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


def tasks_alarm() -> AlarmState:
    readings = observability_selectors.readings(
        queues=observability_selectors.queue_health(), backlog=observability_selectors.outbox_backlog()
    )
    return next(
        status.state
        for status in observability_selectors.alarm_states(readings)
        if status.definition.key == "tasks-dead-letters"
    )


def test_the_task_queue_is_the_one_celery_uses_with_a_redrive_policy(sqs_broker, settings):
    Provisioner().apply()
    tasks = topology.task_queue()
    # Celery's SQS transport names its queue prefix + queue name; provisioning must create that one.
    assert tasks.name == "shopbus-tasks-default"
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=url_of(tasks.name), AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["VisibilityTimeout"] == str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"])
    policy = json.loads(attributes["RedrivePolicy"])
    assert policy["maxReceiveCount"] == settings.SQS_MAX_RECEIVE_COUNT
    assert policy["deadLetterTargetArn"].endswith(":shopbus-tasks-default-dlq")
    assert Provisioner().apply() == []  # a second run changes nothing


def test_a_message_that_never_gets_acknowledged_ends_in_the_dlq_listed_alarmed_and_redrivable(sqs_broker, settings):
    Provisioner().apply()
    tasks = topology.task_queue()
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=url_of(tasks.name), MessageBody="a task that kills its worker")
    assert tasks_alarm() == AlarmState.OK
    # Each receive is a worker that took it and died: visible again at once, never deleted.
    for _ in range(settings.SQS_MAX_RECEIVE_COUNT):
        [message] = sqs.receive_message(QueueUrl=url_of(tasks.name), VisibilityTimeout=0)["Messages"]
    assert sqs.receive_message(QueueUrl=url_of(tasks.name)).get("Messages", []) == []

    listed = io.StringIO()
    call_command("dlq", "list", stdout=listed)
    [row] = [line.split() for line in listed.getvalue().splitlines() if line.startswith("(tasks)")]
    assert row == ["(tasks)", "shopbus-tasks-default", "0", "0", "1"]
    assert tasks_alarm() == AlarmState.ALARM
    assert "shopbus-tasks-dead-letters" in {definition.name for definition in definitions()}

    moved = io.StringIO()
    call_command("dlq", "redrive", "tasks", stdout=moved)
    assert "Moved 1 message(s) from shopbus-tasks-default-dlq to shopbus-tasks-default" in moved.getvalue()
    [message] = sqs.receive_message(QueueUrl=url_of(tasks.name))["Messages"]
    assert message["Body"] == "a task that kills its worker"
    assert tasks_alarm() == AlarmState.OK


def test_without_an_sqs_broker_there_is_no_task_queue_to_provision(provisioned):
    assert topology.task_queue() is None
    assert "shopbus-tasks" not in " ".join(aws.client("sqs").list_queues().get("QueueUrls", []))
