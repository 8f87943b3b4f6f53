"""A systematic search of the orchestrated saga (ORDER_SAGA=stepfunctions), like tests/orders/test_saga.py
for the choreography. The execution is played by a small interpreter of the generated definition
(sagas/definition.py); Hypothesis chooses the order in which commands, domain events and the
services' replies are delivered, duplicates deliveries, may time a step out (a late reply is then
ignored, as Step Functions ignores it), and may have the customer cancel at any point. Every delivery
goes through the real consumer path, alone or in one receive with other pending deliveries to its
queue. At quiescence the invariants of the choreography must hold."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventbus import registry
from eventbus.consuming import handle_batch
from eventbus.event_types import EventType
from eventbus.models import OutboxEvent
from eventbus.state_machine import IllegalTransition
from orders import services as order_services
from orders.models import Order
from sagas import services as saga_services
from sagas.definition import definition
from sagas.models import SagaReply
from tests.events import delivery_of, envelope
from tests.factories import OrderItemFactory, PlaceOrderRequestFactory, ProductFactory
from tests.saga_checks import assert_settled_consistently, received_with

pytestmark = pytest.mark.django_db

SAGA_SERVICES = ("orders", "inventory", "payments")
ON_HAND = 3


class Execution:
    """Plays the generated state machine: Task (put a command, wait for its answer), Pass, Succeed,
    Fail, Retry and Catch. Each attempt at a task gets a fresh task token, as in Step Functions."""

    def __init__(self, order: dict[str, Any]) -> None:
        self.machine = definition()
        self.data: dict[str, Any] = {"order": order}
        self.state = self.machine["StartAt"]
        self.token: str | None = None
        self.status = "RUNNING"
        self.attempts = 0

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            resolved = {}
            for key, item in value.items():
                if key.endswith(".$"):
                    resolved[key[:-2]] = self._path(item)
                else:
                    resolved[key] = self._resolve(item)
            return resolved
        if isinstance(value, list):
            return [self._resolve(item) for item in value]
        return value

    def _path(self, path: str) -> Any:
        if path == "States.UUID()":
            return str(uuid.uuid4())
        if path == "$$.Task.Token":
            return self.token
        if path == "$$.State.EnteredTime":
            return datetime.now(UTC).isoformat()
        node: Any = self.data
        for part in path.removeprefix("$.").split("."):
            node = node[part]
        return node

    def advance(self) -> tuple[EventType, dict[str, Any]] | None:
        """Run to the next task and return the command it puts on the bus, or None once finished."""
        while True:
            state = self.machine["States"][self.state]
            if state["Type"] == "Pass":
                self.data[state["ResultPath"].removeprefix("$.")] = state["Result"]
                self.state = state["Next"]
            elif state["Type"] in ("Succeed", "Fail"):
                self.status = "SUCCEEDED" if state["Type"] == "Succeed" else "FAILED"
                self.token = None
                return None
            else:
                self.token = f"token-{uuid.uuid4()}"
                [entry] = self._resolve(state["Parameters"])["Entries"]
                return EventType(entry["Source"], entry["DetailType"]), entry["Detail"]

    def answer(self, *, succeeded: bool, error: str = "") -> tuple[EventType, dict[str, Any]] | None:
        state = self.machine["States"][self.state]
        retry = next(
            (r for r in state.get("Retry", []) if error in r["ErrorEquals"] or "States.ALL" in r["ErrorEquals"]),
            None,
        )
        if not succeeded and retry and self.attempts < retry["MaxAttempts"]:
            self.attempts += 1
            return self.advance()  # the same task again, with a new token
        self.attempts = 0
        if succeeded:
            self.state = state["Next"]
        else:
            catcher = next(c for c in state["Catch"] if error in c["ErrorEquals"] or "States.ALL" in c["ErrorEquals"])
            self.state = catcher["Next"]
        return self.advance()


def run(data: st.DataObject) -> tuple[Order, Execution]:
    sku = f"orch-{uuid.uuid4().hex[:10]}"
    ProductFactory(sku=sku, stock__on_hand=ON_HAND)
    quantity = data.draw(st.integers(1, ON_HAND + 1), label="quantity")
    token = data.draw(st.sampled_from(["tok_visa", "tok_chargeDeclined"]), label="token")
    order = order_services.place_order(
        request=PlaceOrderRequestFactory(
            items=[OrderItemFactory(product_id=sku, quantity=quantity)], payment_token=token
        )
    )
    placed = OutboxEvent.objects.get(correlation_id=str(order.pk), detail_type="Order Placed")
    execution = Execution(placed.detail["data"])
    seen: set[uuid.UUID] = set()
    pending: list[Any] = []

    def command_delivery(command: tuple[EventType, dict[str, Any]] | None) -> None:
        if command is None:
            return
        event_type, detail = command
        [service] = [s for s in SAGA_SERVICES if registry.subscription_for(s, *event_type)]
        pending.append(("command", service, envelope(event_type, detail_value=detail), execution.token))

    def new_domain_deliveries() -> None:
        for row in OutboxEvent.objects.filter(correlation_id=str(order.pk)).order_by("created_at"):
            if row.id in seen:
                continue
            seen.add(row.id)
            for service in SAGA_SERVICES:
                if registry.subscription_for(service, row.source, row.detail_type):
                    pending.append(("event", service, delivery_of(row), None))

    command_delivery(execution.advance())
    new_domain_deliveries()
    answered: set[str] = set()
    if data.draw(st.booleans(), label="customer cancels"):
        pending.append(("cancel", None, None, None))
    duplicates_left = data.draw(st.integers(0, 4), label="duplicates")
    timeouts_left = data.draw(st.integers(0, 1), label="timeouts")
    while pending or execution.status == "RUNNING":
        replies = list(SagaReply.objects.filter(order_id=order.pk).exclude(task_token__in=answered))
        choices = [*pending, *(("reply", reply) for reply in replies)]
        if timeouts_left and execution.token:
            choices.append(("timeout",))
        assert choices, f"stuck in {execution.state}"
        choice = choices[data.draw(st.integers(0, len(choices) - 1), label="next")]
        if choice[0] == "reply":
            reply = choice[1]
            answered.add(reply.task_token)
            if reply.task_token == execution.token:  # a late reply to a timed-out step is ignored
                command_delivery(execution.answer(succeeded=reply.succeeded, error=reply.error))
        elif choice[0] == "timeout":
            timeouts_left -= 1
            command_delivery(execution.answer(succeeded=False, error="States.Timeout"))
        else:
            pending.remove(choice)
            kind, service, body, _ = choice
            if kind == "cancel":
                with contextlib.suppress(IllegalTransition):
                    order_services.cancel_order(order_id=order.pk, reason_code="CUSTOMER_REQUEST", reason="no")
            else:
                if duplicates_left and data.draw(st.booleans(), label="duplicate it"):
                    duplicates_left -= 1
                    pending.append(choice)
                # A worker may receive it with other pending deliveries to the same queue, in any order.
                same_queue = [other for other in pending if other[0] != "cancel" and other[1] == service]
                others = received_with(data, pending, same_queue)
                receive = [body, *(other[2] for other in others)]
                for outcome in handle_batch(service=service, bodies=receive):
                    assert outcome.acknowledged, f"{service}: {outcome.note}"
        new_domain_deliveries()
    order.refresh_from_db()
    return order, execution


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_every_interleaving_of_commands_events_and_replies_keeps_the_saga_consistent(data, monkeypatch_saga):
    order, execution = run(data)
    # The execution finished, the order is final, and every service agrees with both. A confirmed order
    # may still be cancelled by its customer after the execution succeeded (then it is refunded).
    assert execution.status in ("SUCCEEDED", "FAILED")
    if execution.status == "FAILED":
        assert order.status == Order.Status.CANCELLED
    elif order.status == Order.Status.CANCELLED:
        assert order.cancellation_reason_code == "CUSTOMER_REQUEST"
    else:
        assert order.status == Order.Status.CONFIRMED
    assert_settled_consistently(order, on_hand=ON_HAND, reservation_may_be_missing=True)


@pytest.fixture
def monkeypatch_saga(settings, monkeypatch):
    """The orchestrated coordinator, with replies read by the interpreter instead of sent to AWS."""
    settings.ORDER_SAGA = "stepfunctions"
    monkeypatch.setattr(saga_services, "send_replies", lambda **kwargs: 0)
