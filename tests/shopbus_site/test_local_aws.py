"""The local endpoint's speed-ups change moto's time, never its answers."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.events import models as events_models
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


def a_routed_event(detail: dict) -> dict:
    return {
        "version": "0",
        "id": "0d8a8b8e-7c1f-4f3e-9d55-0b6f2f0f4c11",
        "detail-type": "Order Placed",
        "source": "ecommerce.orders",
        "account": DEFAULT_ACCOUNT_ID,
        "time": 1795777687.301234,
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/x"],
        "detail": detail,
        "ingestion-time": 1795777687.4,
    }


DETAILS = [
    {"metadata": {"eventId": "e-1", "version": "1.0"}, "data": {"orderId": "o-1", "items": [{"quantity": 2}]}},
    {"data": {"note": 'quotes " and <id> and <source> and unicode é', "total": 10.5, "none": None}},
    {},
]


@pytest.mark.parametrize("detail", DETAILS)
def test_an_event_built_for_a_target_is_what_moto_s_template_builds(detail):
    speed_up_moto()
    build = events_models.EventTemplateParser.parse
    event = a_routed_event(detail)
    built = build(input_template=None, input_paths_map={}, event=event)
    if "<id>" in str(detail):
        # moto's text template substitutes into the detail's own text as well: its answer would be wrong.
        assert built["detail"] == detail
    else:
        assert built == build.__wrapped__(input_template=None, input_paths_map={}, event=event)
    assert built["detail"] is not event["detail"]


PATTERNS = [
    {"source": [{"prefix": "ecommerce."}]},
    {"detail-type": ["Order Placed"], "detail": {"data": {"orderId": [{"exists": True}]}}},
    {"detail": {"data": {"total": [{"numeric": [">", 10]}]}}},
    {"detail": {"data": {"none": [None]}}},
    {"source": [{"anything-but": ["ecommerce.orders"]}]},
    {"detail": {"metadata": {"eventId": [{"exists": False}]}}},
]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("detail", DETAILS)
def test_a_pattern_matches_the_events_it_matched(pattern, detail):
    speed_up_moto()
    compiled = events_models.EventPattern.load(json.dumps(pattern))
    event = a_routed_event(detail)
    assert compiled.matches_event(event) == events_models.EventPattern.matches_event.__wrapped__(compiled, event)


def test_put_events_still_routes_each_event_to_the_queues_whose_rules_match():
    speed_up_moto()
    sqs, events = boto3.client("sqs", region_name="us-east-1"), boto3.client("events", region_name="us-east-1")
    urls = {}
    for name, pattern in (("orders-only", {"source": ["ecommerce.orders"]}), ("all", {"source": [{"prefix": ""}]})):
        urls[name] = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=urls[name], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])

    events.put_events(
        Entries=[
            {"Source": source, "DetailType": "Order Placed", "Detail": json.dumps({"n": n})}
            for n, source in enumerate(["ecommerce.orders", "ecommerce.inventory"])
        ]
    )

    def bodies(name):
        messages = sqs.receive_message(QueueUrl=urls[name], MaxNumberOfMessages=10)["Messages"]
        return sorted((json.loads(m["Body"])["source"], json.loads(m["Body"])["detail"]["n"]) for m in messages)

    assert bodies("orders-only") == [("ecommerce.orders", 0)]
    assert bodies("all") == [("ecommerce.inventory", 1), ("ecommerce.orders", 0)]
