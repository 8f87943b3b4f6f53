"""The state machine is generated from code; these are the states and paths it must have."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from eventbus import aws, topology
from eventbus.provisioning import Provisioner
from sagas import provisioning as saga_provisioning
from sagas.definition import COMPENSATION_STEPS, FORWARD_STEPS, PUT_EVENTS_AND_WAIT, definition
from sagas.provisioning import TRUST_POLICY

pytestmark = pytest.mark.django_db


def test_the_forward_path_is_reserve_charge_confirm():
    states = definition()["States"]
    assert definition()["StartAt"] == "ReserveStock"
    assert [states[step]["Next"] for step in FORWARD_STEPS] == ["ChargePayment", "ConfirmOrder", "Confirmed"]
    assert states["Confirmed"] == {"Type": "Succeed"}


def test_every_step_puts_a_command_with_its_task_token_and_waits(settings):
    settings.SAGA_STEP_TIMEOUT_SECONDS = 42
    states = definition()["States"]
    expected = {
        "ReserveStock": "Reserve Stock",
        "ChargePayment": "Charge Payment",
        "ConfirmOrder": "Confirm Order",
        "RefundPayment": "Refund Payment",
        "ReleaseStock": "Release Stock",
        "CancelOrder": "Cancel Order",
    }
    for name, detail_type in expected.items():
        state = states[name]
        assert state["Resource"] == PUT_EVENTS_AND_WAIT
        [entry] = state["Parameters"]["Entries"]
        assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
            "shopbus.saga",
            detail_type,
            topology.bus_name(),
        )
        assert entry["Detail"]["data"]["taskToken.$"] == "$$.Task.Token"
        assert entry["Detail"]["metadata"]["eventId.$"] == "States.UUID()"
    assert [states[step]["TimeoutSeconds"] for step in FORWARD_STEPS] == [42, 42, 42]


@pytest.mark.parametrize(
    ("step", "error", "reason_state", "reason_code"),
    [
        ("ReserveStock", "OUT_OF_STOCK", "OutOfStock", "OUT_OF_STOCK"),
        ("ChargePayment", "PAYMENT_FAILED", "PaymentFailed", "PAYMENT_FAILED"),
        ("ChargePayment", "TRANSIENT", "PaymentFailed", "PAYMENT_FAILED"),
        ("ConfirmOrder", "ORDER_CANCELLED", "CancelledMeanwhile", "CUSTOMER_REQUEST"),
        ("ChargePayment", "States.Timeout", "StepTimedOut", "TIMEOUT"),
        ("ReserveStock", "States.HeartbeatTimeout", "StepTimedOut", "TIMEOUT"),
    ],
)
def test_a_failure_at_any_step_compensates_in_reverse_with_its_reason(step, error, reason_state, reason_code):
    states = definition()["States"]
    catcher = next(c for c in states[step]["Catch"] if error in c["ErrorEquals"] or c["ErrorEquals"] == ["States.ALL"])
    assert catcher["Next"] == reason_state
    assert states[reason_state]["Result"]["reasonCode"] == reason_code
    # refund (or void) the payment, release the stock, cancel the order, in that order
    path, state = [], states[reason_state]["Next"]
    while states[state]["Type"] == "Task":
        path.append(state)
        state = states[state]["Next"]
    assert tuple(path) == COMPENSATION_STEPS
    assert states[state]["Type"] == "Fail"


def test_transient_errors_are_retried_before_compensating(settings):
    settings.SAGA_STEP_RETRY_ATTEMPTS = 4
    retry = definition()["States"]["ChargePayment"]["Retry"][0]
    assert "TRANSIENT" in retry["ErrorEquals"] and retry["MaxAttempts"] == 4


def test_provisioning_creates_the_state_machine_and_its_role_idempotently(provisioned):
    sfn, iam = aws.client("stepfunctions"), aws.client("iam")
    [machine] = sfn.list_state_machines()["stateMachines"]
    assert machine["name"] == "order-saga"
    described = sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])
    assert described["type"] == "STANDARD"
    assert json.loads(described["definition"]) == definition()
    assert described["roleArn"].endswith(":role/order-saga-role")
    policy = iam.get_role_policy(RoleName="order-saga-role", PolicyName="put-saga-commands-us-east-1")["PolicyDocument"]
    assert policy["Statement"][0]["Action"] == "events:PutEvents"
    assert Provisioner().apply() == []


def test_a_changed_definition_is_updated_and_teardown_removes_the_machine(provisioned, settings):
    settings.SAGA_STEP_TIMEOUT_SECONDS = 17
    changes = Provisioner().apply()
    assert [(c.action, c.kind, c.detail) for c in changes if c.kind == "state machine"] == [
        ("update", "state machine", "definition")
    ]
    planned = Provisioner(dry_run=True).teardown()
    assert {(c.action, c.kind) for c in planned} >= {("delete", "state machine"), ("delete", "IAM role")}
    Provisioner().teardown()
    assert aws.client("stepfunctions").list_state_machines()["stateMachines"] == []


def test_the_saga_queue_and_rule_exist_only_under_stepfunctions(settings, provisioned):
    assert "sagas" not in [q.service for q in topology.consuming_queues()]
    settings.ORDER_SAGA = "stepfunctions"
    changes = {(c.action, c.kind, c.name) for c in Provisioner().apply()}
    assert ("create", "queue", "order-saga-queue") in changes
    assert ("create", "rule", "sagas-subscriptions") in changes
    assert ("update", "rule", "inventory-subscriptions") in changes  # commands instead of Order Placed


def granted_buses(role: str = "order-saga-role") -> set[str]:
    iam = aws.client("iam")
    return {
        statement["Resource"]
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
        for statement in iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]["Statement"]
    }


EAST_BUS = "arn:aws:events:us-east-1:123456789012:event-bus/ecommerce-events"
WEST_BUS = "arn:aws:events:eu-west-1:123456789012:event-bus/ecommerce-events"


def test_two_regions_share_the_global_role_each_with_its_own_grant(provisioned, settings):
    settings.AWS_REGION = "eu-west-1"
    Provisioner().apply()
    assert granted_buses() == {EAST_BUS, WEST_BUS}
    settings.AWS_REGION = "us-east-1"
    assert Provisioner().apply() == []

    settings.AWS_REGION = "eu-west-1"
    changes = [str(change) for change in Provisioner().teardown()]

    assert "delete IAM role policy order-saga-role/put-saga-commands-eu-west-1" in changes
    assert "skip IAM role order-saga-role (other regions' grants remain: put-saga-commands-us-east-1)" in changes
    assert granted_buses() == {EAST_BUS}
    settings.AWS_REGION = "us-east-1"
    Provisioner().teardown()
    assert aws.client("iam").list_roles()["Roles"] == []


def test_the_grant_from_before_grants_were_per_region_is_replaced_and_torn_down(provisioned):
    iam = aws.client("iam")
    document = iam.get_role_policy(RoleName="order-saga-role", PolicyName="put-saga-commands-us-east-1")
    iam.delete_role_policy(RoleName="order-saga-role", PolicyName="put-saga-commands-us-east-1")
    legacy_grant = json.dumps(document["PolicyDocument"])
    iam.put_role_policy(RoleName="order-saga-role", PolicyName="put-saga-commands", PolicyDocument=legacy_grant)

    changes = [str(change) for change in Provisioner().apply()]

    assert changes == [
        "create IAM role policy order-saga-role/put-saga-commands-us-east-1",
        "delete IAM role policy order-saga-role/put-saga-commands (superseded by this region's own)",
    ]
    iam.put_role_policy(RoleName="order-saga-role", PolicyName="put-saga-commands", PolicyDocument=legacy_grant)
    Provisioner().teardown()
    assert iam.list_roles()["Roles"] == []


NOT_ASSUMABLE_YET = ClientError(
    {
        "Error": {
            "Code": "AccessDeniedException",
            "Message": "Neither the global service principal states.amazonaws.com, nor the regional one is "
            "authorized to assume the provided role.",
        }
    },
    "CreateStateMachine",
)


def refused_at_first(monkeypatch, times: int) -> list[int]:
    """Step Functions refuses the new role `times` times, as IAM's eventual consistency makes it."""
    sfn = aws.client("stepfunctions")
    create, calls = sfn.create_state_machine, []

    def create_once_the_role_propagated(**kwargs):
        calls.append(1)
        if len(calls) <= times:
            raise NOT_ASSUMABLE_YET
        return create(**kwargs)

    monkeypatch.setattr(sfn, "create_state_machine", create_once_the_role_propagated)
    monkeypatch.setattr(saga_provisioning, "NEW_ROLE_RETRY_SECONDS", 0)
    return calls


def test_a_first_provisioning_waits_for_its_new_role_to_propagate(monkeypatch):
    calls = refused_at_first(monkeypatch, times=2)

    Provisioner().apply()

    assert len(calls) == 3
    assert [m["name"] for m in aws.client("stepfunctions").list_state_machines()["stateMachines"]] == ["order-saga"]


def test_a_role_that_already_existed_is_not_waited_for(monkeypatch):
    aws.client("iam").create_role(RoleName="order-saga-role", AssumeRolePolicyDocument=json.dumps(TRUST_POLICY))
    calls = refused_at_first(monkeypatch, times=1)

    with pytest.raises(ClientError, match="assume the provided role"):
        Provisioner().apply()
    assert len(calls) == 1
