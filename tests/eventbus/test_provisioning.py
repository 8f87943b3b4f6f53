from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from eventbus import aws, registry, topology
from eventbus.provisioning import Provisioner

ACCOUNT = "123456789012"  # moto's account
REGION = "us-east-1"
EXPECTED_QUEUES = {
    # service: (queue, visibility, retention)
    "orders": ("order-processing-queue", "300", str(14 * 86400)),
    "inventory": ("inventory-updates-queue", "60", str(4 * 86400)),
    "analytics": ("analytics-queue", "120", str(14 * 86400)),
    "audit": ("audit-queue", "120", str(14 * 86400)),
    "payments": ("payment-processing-queue", "60", str(4 * 86400)),
    "notifications": ("notification-queue", "30", str(4 * 86400)),
}


def rule_arn(name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/ecommerce-events/{name}"


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def attributes(name: str) -> dict[str, str]:
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def tags(name: str) -> dict[str, str]:
    sqs = aws.client("sqs")
    return sqs.list_queue_tags(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])["Tags"]


def test_every_subscribed_service_gets_its_queue_with_the_exercise_attributes(provisioned, settings):
    subscribed = registry.services()
    assert {"orders", "inventory", "analytics", "audit"} <= set(subscribed)
    for service in subscribed:
        name, visibility, retention = EXPECTED_QUEUES[service]
        queue = attributes(name)
        assert queue["VisibilityTimeout"] == visibility
        assert queue["MessageRetentionPeriod"] == retention
        assert queue["ReceiveMessageWaitTimeSeconds"] == "20"
        assert json.loads(queue["RedrivePolicy"]) == {
            "deadLetterTargetArn": queue_arn(f"{name}-dlq"),
            "maxReceiveCount": settings.SQS_MAX_RECEIVE_COUNT,
        }
        assert attributes(f"{name}-dlq")["MessageRetentionPeriod"] == str(14 * 86400)
        assert tags(name) == {"Environment": "local", "Project": "shopbus", "Owner": "platform-team"}


def test_queue_policies_admit_only_the_queue_s_own_rule(provisioned):
    for service in registry.services():
        name = EXPECTED_QUEUES[service][0]
        [statement] = json.loads(attributes(name)["Policy"])["Statement"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Resource"] == queue_arn(name)
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn(f"{service}-subscriptions")}}
    [target_dlq_statement] = json.loads(attributes("ecommerce-events-target-dlq")["Policy"])["Statement"]
    assert sorted(target_dlq_statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(
        rule_arn(f"{service}-subscriptions") for service in registry.services()
    )


def test_one_rule_per_service_derived_from_its_handlers_each_with_one_guarded_target(provisioned):
    events = aws.client("events")
    for service in registry.services():
        rule = events.describe_rule(Name=f"{service}-subscriptions", EventBusName="ecommerce-events")
        assert rule["State"] == "ENABLED"
        assert json.loads(rule["EventPattern"]) == registry.event_pattern(service)
        [target] = events.list_targets_by_rule(Rule=f"{service}-subscriptions", EventBusName="ecommerce-events")[
            "Targets"
        ]
        assert target["Arn"] == queue_arn(EXPECTED_QUEUES[service][0])
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
        assert target["DeadLetterConfig"] == {"Arn": queue_arn("ecommerce-events-target-dlq")}


def test_inventory_s_rule_matches_exactly_the_events_it_handles():
    assert registry.event_pattern("inventory") == {
        "source": ["ecommerce.orders"],
        "detail-type": ["Order Cancelled", "Order Confirmed", "Order Placed"],
    }
    assert registry.event_pattern("audit") == {"source": [{"prefix": "ecommerce."}]}


def test_bus_archive_and_dashboard(provisioned):
    events = aws.client("events")
    bus_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/ecommerce-events"
    bus_tags = {t["Key"]: t["Value"] for t in events.list_tags_for_resource(ResourceARN=bus_arn)["Tags"]}
    assert bus_tags == {"Environment": "local", "Project": "shopbus", "Owner": "platform-team"}
    archive = events.describe_archive(ArchiveName="ecommerce-events-archive")
    assert archive["EventSourceArn"] == bus_arn
    assert json.loads(archive["EventPattern"]) == {"source": [{"prefix": "ecommerce."}]}
    dashboard = json.loads(
        aws.client("cloudwatch").get_dashboard(DashboardName=f"shopbus-events-{REGION}")["DashboardBody"]
    )
    assert any("Dead-letter" in widget["properties"]["title"] for widget in dashboard["widgets"])


def test_each_region_has_its_own_dashboard_since_dashboards_are_global(provisioned, settings):
    cloudwatch = aws.client("cloudwatch")
    legacy_body = cloudwatch.get_dashboard(DashboardName=f"shopbus-events-{REGION}")["DashboardBody"]
    cloudwatch.put_dashboard(DashboardName="shopbus-events", DashboardBody=legacy_body)

    assert [str(change) for change in Provisioner().apply()] == ["delete dashboard shopbus-events (superseded)"]

    settings.AWS_REGION = "eu-west-1"
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_dashboard(DashboardName="shopbus-events", DashboardBody=legacy_body)  # us-east-1's, by its widgets
    Provisioner().apply()
    Provisioner().teardown()
    names = {entry["DashboardName"] for entry in cloudwatch.list_dashboards()["DashboardEntries"]}
    assert "shopbus-events-eu-west-1" not in names
    assert "shopbus-events" in names


def test_a_target_that_rewrites_the_event_is_drift(provisioned):
    events = aws.client("events")
    [target] = events.list_targets_by_rule(Rule="inventory-subscriptions", EventBusName="ecommerce-events")["Targets"]
    events.put_targets(
        Rule="inventory-subscriptions", EventBusName="ecommerce-events", Targets=[{**target, "InputPath": "$.detail"}]
    )

    assert [str(change) for change in Provisioner().apply()] == ["update target inventory-subscriptions/service-queue"]
    [target] = events.list_targets_by_rule(Rule="inventory-subscriptions", EventBusName="ecommerce-events")["Targets"]
    assert "InputPath" not in target


def test_a_second_run_changes_nothing(provisioned):
    assert Provisioner().apply() == []
    out = io.StringIO()
    call_command("provision_aws", stdout=out)
    assert "No changes" in out.getvalue()


def test_drift_is_repaired_and_the_repair_keeps_the_queue_policy(provisioned):
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName="inventory-updates-queue")["QueueUrl"]
    policy = attributes("inventory-updates-queue")["Policy"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "5", "Policy": policy})

    [change] = Provisioner().apply()

    assert str(change) == "update queue inventory-updates-queue (VisibilityTimeout)"
    assert attributes("inventory-updates-queue")["VisibilityTimeout"] == "60"
    # moto drops the policy when other attributes are set without it; the provisioner resends it.
    assert json.loads(attributes("inventory-updates-queue")["Policy"]) == json.loads(policy)
    assert Provisioner().apply() == []


def test_dry_run_prints_the_plan_and_creates_nothing():
    out = io.StringIO()
    call_command("provision_aws", "--dry-run", stdout=out)
    assert "would create event bus ecommerce-events" in out.getvalue()
    assert "would create queue inventory-updates-queue" in out.getvalue()
    assert not aws.client("sqs").list_queues().get("QueueUrls")
    assert [b["Name"] for b in aws.client("events").list_event_buses()["EventBuses"]] == ["default"]


def test_teardown_removes_exactly_what_provisioning_made(provisioned):
    sqs = aws.client("sqs")
    sqs.create_queue(QueueName="someone-elses-queue")
    sqs.create_queue(QueueName="analytics-queue-dlq-copy")

    call_command("teardown_aws", "--yes", stdout=io.StringIO())

    remaining = sorted(url.rsplit("/", 1)[1] for url in sqs.list_queues().get("QueueUrls", []))
    assert remaining == ["analytics-queue-dlq-copy", "someone-elses-queue"]
    assert [b["Name"] for b in aws.client("events").list_event_buses()["EventBuses"]] == ["default"]
    assert not aws.client("events").list_archives()["Archives"]
    assert Provisioner().teardown() == []


def test_teardown_asks_first(provisioned, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="cancelled"):
        call_command("teardown_aws", stdout=io.StringIO())
    assert aws.client("sqs").list_queues()["QueueUrls"]


def test_names_take_the_environment_prefix(settings):
    settings.AWS_RESOURCE_PREFIX = "staging-"
    Provisioner().apply()
    names = sorted(url.rsplit("/", 1)[1] for url in aws.client("sqs").list_queues()["QueueUrls"])
    assert "staging-inventory-updates-queue" in names
    assert all(name.startswith("staging-") for name in names)
    assert topology.bus_name() == "staging-ecommerce-events"


def test_an_unreachable_endpoint_is_a_one_line_error(db):
    with override_settings(AWS_ENDPOINT_URL="http://127.0.0.1:9"), pytest.raises(CommandError) as raised:
        call_command("provision_aws", stdout=io.StringIO())
    message = str(raised.value)
    assert message == "cannot reach http://127.0.0.1:9 (is the local stack running? `make run` starts it)"


def test_missing_credentials_are_a_one_line_error(db, monkeypatch):
    # Blank rather than delete: mock_aws restores these variables when the test ends.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with override_settings(LOCAL_AWS_CREDENTIALS={}), pytest.raises(CommandError) as raised:
        call_command("provision_aws", stdout=io.StringIO())
    assert str(raised.value).startswith("no AWS credentials")
