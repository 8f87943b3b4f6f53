"""A redrive that AWS stops part-way, or whose deletes the DLQ refuses, says what moved and what did not."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError
from django.core.management import call_command
from django.core.management.base import CommandError

from eventbus import aws, topology
from tests.helpers import queue_depth, staff_client

AUDIT = topology.SERVICE_QUEUES["audit"]


def fill_dlq(count: int) -> None:
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=AUDIT.dlq_name)["QueueUrl"]
    for n in range(count):
        sqs.send_message(QueueUrl=url, MessageBody=f"letter {n}")


@pytest.fixture
def second_send_throttled(monkeypatch):
    sqs = aws.client("sqs")
    send_message_batch = sqs.send_message_batch
    sends = []

    def throttled_the_second_time(**kwargs):
        sends.append(1)
        if len(sends) == 2:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "SendMessageBatch")
        return send_message_batch(**kwargs)

    monkeypatch.setattr(sqs, "send_message_batch", throttled_the_second_time)


@pytest.mark.django_db
def test_a_redrive_stopped_part_way_says_what_moved_and_fails(provisioned, second_send_throttled):
    fill_dlq(15)
    out = io.StringIO()

    with pytest.raises(CommandError, match="stopped part-way: .*ThrottlingException"):
        call_command("dlq", "redrive", "audit", "--max", "15", stdout=out)

    assert f"Moved 10 message(s) from {AUDIT.dlq_name} to {AUDIT.name}." in out.getvalue()
    assert (queue_depth(AUDIT.name), queue_depth(AUDIT.dlq_name)) == (10, 5)


@pytest.mark.django_db(transaction=True)
def test_the_admin_says_what_a_redrive_stopped_part_way_moved(provisioned, second_send_throttled):
    fill_dlq(15)

    page = (
        staff_client(superuser=True)
        .post("/admin/eventbus/deliveryfailure/redrive/", {"queue": AUDIT.name, "max_messages": "15"}, follow=True)
        .content.decode()
    )

    assert f"Moved 10 message(s) from {AUDIT.dlq_name} back to {AUDIT.name}; stopped part-way:" in page
    assert "Nothing moved" not in page


@pytest.mark.django_db
def test_messages_the_dlq_would_not_delete_are_not_reported_as_moved(provisioned, monkeypatch):
    fill_dlq(3)

    def delete_refused(**kwargs):  # the receipt handles expired, say
        failed = [
            {"Id": entry["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid"} for entry in kwargs["Entries"]
        ]
        return {"Successful": [], "Failed": failed}

    monkeypatch.setattr(aws.client("sqs"), "delete_message_batch", delete_refused)
    out = io.StringIO()

    with pytest.raises(CommandError, match="3 message\\(s\\) were sent back .* so a copy is in each"):
        call_command("dlq", "redrive", "audit", "--max", "3", stdout=out)

    assert "Moved 0 message(s)" in out.getvalue()
    assert (queue_depth(AUDIT.name), queue_depth(AUDIT.dlq_name)) == (3, 3)
