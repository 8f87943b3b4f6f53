"""The local endpoint's speed-ups change moto's time, never its answers."""

from __future__ import annotations

import time

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import sqs_backends

from shopbus_site.local_aws import speed_up_moto


def test_a_receive_still_leaves_out_messages_past_their_queues_retention():
    speed_up_moto()
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="retained", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="fresh")
    sqs.send_message(QueueUrl=url, MessageBody="too old")
    too_old = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues["retained"]._messages[1]
    too_old.sent_timestamp -= 61_000

    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]

    assert [message["Body"] for message in received] == ["fresh"]


def test_the_queues_clock_still_hides_received_and_delayed_messages_and_counts_them():
    speed_up_moto()
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="clocked")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="now")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)

    [received] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"]
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    assert received["Body"] == "now"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    assert (
        counts["ApproximateNumberOfMessages"],
        counts["ApproximateNumberOfMessagesNotVisible"],
        counts["ApproximateNumberOfMessagesDelayed"],
    ) == ("0", "1", "1")
    time.sleep(1.1)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(message["Body"] for message in again) == ["later", "now"]
