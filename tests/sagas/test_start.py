"""One execution per order, however often Order Placed reaches the saga's queue."""

from __future__ import annotations

import uuid

import pytest

from eventbus import aws
from eventbus.consuming import handle_message
from eventbus.event_types import ORDER_PLACED
from sagas import services
from tests.events import envelope, order_placed_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def stepfunctions_mode(settings, provisioned):
    settings.ORDER_SAGA = "stepfunctions"


def test_a_duplicate_start_finds_the_first_execution(stepfunctions_mode):
    order_id = uuid.uuid4()
    data = order_placed_data(order_id)
    first = services.start_execution(order_id=order_id, order=data)
    again = services.start_execution(order_id=order_id, order=data)
    assert first == again == services.execution_arn(order_id)
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=services.state_machine_arn())
    assert [e["name"] for e in executions["executions"]] == [str(order_id)]


def test_order_placed_starts_the_order_s_execution_named_after_it(stepfunctions_mode):
    order_id = uuid.uuid4()
    for _ in range(2):  # the second delivery is a replay: a new envelope, the same event id
        outcome = handle_message(
            service="sagas",
            body=envelope(ORDER_PLACED, order_placed_data(order_id), event_id="e7ac2c0e-4b1f-4a4e-9f57-0c1c7bfa4a10"),
        )
        assert outcome.acknowledged
    described = aws.client("stepfunctions").describe_execution(executionArn=services.execution_arn(order_id))
    assert described["name"] == str(order_id)
    assert '"orderId": "' + str(order_id) in described["input"]


def test_under_choreography_nothing_starts_an_execution(provisioned):
    outcome = handle_message(service="sagas", body=envelope(ORDER_PLACED, order_placed_data(uuid.uuid4())))
    assert (outcome.acknowledged, outcome.result) == (False, "unroutable")
