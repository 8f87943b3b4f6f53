"""The orchestrated saga (ORDER_SAGA=stepfunctions) end to end on moto's real server, with a real
worker consuming real queues and Step Functions executing the generated state machine."""

from __future__ import annotations

import io
import threading

import pytest
from django.core.management import call_command

from eventbus import aws
from eventbus.consuming import EventConsumer
from inventory.models import StockItem
from notifications.models import Notification
from orders import services
from orders.models import Order
from payments.models import Payment, Refund
from sagas import services as saga_services
from sagas.models import SagaReply
from tests.helpers import place_demo_order as place
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def execution_status(order: Order) -> str:
    return aws.client("stepfunctions").describe_execution(executionArn=saga_services.execution_arn(order.pk))["status"]


def finishes(order: Order, *, status: str, execution: str, timeout: float = 45) -> Order:
    wait_for(lambda: Order.objects.get(pk=order.pk).status == status, timeout=timeout, what=f"order {status}")
    wait_for(lambda: execution_status(order) == execution, timeout=timeout, what=f"execution {execution}")
    return Order.objects.get(pk=order.pk)


def stock(sku: str) -> StockItem:
    return StockItem.objects.get(product__sku=sku)


def test_the_happy_path_confirms_through_the_state_machine(stepfunctions_stack):
    order = place()
    finishes(order, status="CONFIRMED", execution="SUCCEEDED")

    assert Payment.objects.get(order_id=order.pk).status == "CHARGED"
    wait_for(lambda: stock("prod-1").on_hand == 49 and stock("prod-1").reserved == 0, what="the sale committed")
    wait_for(
        lambda: Notification.objects.filter(correlation_id=str(order.pk), kind="order_confirmed").exists(),
        what="the confirmation email",
    )
    replies = SagaReply.objects.filter(order_id=order.pk)
    assert sorted(replies.values_list("command", flat=True)) == ["Charge Payment", "Confirm Order", "Reserve Stock"]
    assert set(replies.values_list("status", flat=True)) == {"SENT"}
    out = io.StringIO()
    call_command("saga", "show", str(order.pk), stdout=out)
    history = out.getvalue()
    assert "status SUCCEEDED" in history and "ConfirmOrder" in history and "ExecutionSucceeded" in history


def test_a_decline_cancels_with_payment_failed_returns_the_stock_and_sends_one_email(stepfunctions_stack):
    order = place(token="tok_chargeDeclined", sku="prod-2", quantity=3)
    order = finishes(order, status="CANCELLED", execution="FAILED")

    assert order.cancellation_reason_code == "PAYMENT_FAILED"
    wait_for(lambda: stock("prod-2").reserved == 0, what="the stock released")
    assert stock("prod-2").on_hand == 100
    assert Payment.objects.get(order_id=order.pk).status == "DECLINED"
    wait_for(lambda: Notification.objects.filter(correlation_id=str(order.pk)).exists(), what="an email")
    assert list(Notification.objects.filter(correlation_id=str(order.pk)).values_list("kind", flat=True)) == [
        "payment_failed"
    ]


def test_out_of_stock_cancels_without_charging(stepfunctions_stack):
    order = place(sku="prod-3", quantity=6)
    order = finishes(order, status="CANCELLED", execution="FAILED")
    assert order.cancellation_reason_code == "OUT_OF_STOCK"
    assert Payment.objects.get(order_id=order.pk).status == "VOIDED"
    assert stock("prod-3").reserved == 0


def test_a_cancel_while_the_charge_step_waits_compensates_and_charges_nothing(start_stack):
    # Every service but payments consumes, so the execution waits at ChargePayment.
    start_stack(coordinator="stepfunctions", consumers=["orders", "inventory", "notifications", "sagas"])
    order = place(sku="prod-4")
    wait_for(lambda: stock("prod-4").reserved == 1, what="the stock reserved")
    wait_for(lambda: _state(order) == "ChargePayment", what="the charge step")

    services.cancel_order(order_id=order.pk, reason_code="CUSTOMER_REQUEST", reason="changed my mind")
    payments = EventConsumer(["payments"])
    payments.start()
    try:
        finishes(order, status="CANCELLED", execution="FAILED")
        wait_for(lambda: Payment.objects.get(order_id=order.pk).status in ("VOIDED", "REFUNDED"), what="payment")
    finally:
        payments.stop()
    payment = Payment.objects.get(order_id=order.pk)
    assert payment.status == "VOIDED" or Refund.objects.filter(payment=payment).exists()
    assert payment.charged_at is None or Refund.objects.filter(payment=payment).exists()
    assert stock("prod-4").reserved == 0 and stock("prod-4").on_hand == 30


def test_a_step_with_no_answer_times_out_and_compensates_with_timeout(start_stack, settings):
    settings.SAGA_STEP_TIMEOUT_SECONDS = 3
    settings.PAYMENT_SIMULATED_LATENCY_MS = 4000  # the charge answers after its step has timed out
    start_stack(coordinator="stepfunctions")
    order = place(sku="prod-5")
    order = finishes(order, status="CANCELLED", execution="FAILED", timeout=60)

    assert order.cancellation_reason_code == "TIMEOUT"
    wait_for(lambda: Payment.objects.get(order_id=order.pk).status in ("VOIDED", "REFUNDED"), what="compensation")
    wait_for(lambda: stock("prod-5").reserved == 0, what="the stock released")
    # The charge answered after its step had timed out: the refund step gave the money back, and the
    # late answer changed nothing (AWS refuses it with TaskTimedOut; moto accepts and ignores it, so
    # dropping it is tested in test_replies.py).
    assert Payment.objects.get(order_id=order.pk).status == "REFUNDED"
    assert execution_status(order) == "FAILED"


def test_a_worker_killed_between_commit_and_reply_still_answers_and_charges_once(stepfunctions_stack, monkeypatch):
    # The crash: every reply is committed, but the worker dies before sending it.
    monkeypatch.setattr(saga_services, "send_replies", lambda **kwargs: 0)
    order = place(sku="prod-6")
    wait_for(lambda: SagaReply.objects.filter(order_id=order.pk, command="Reserve Stock").exists(), what="a reply")
    assert _state(order) == "ReserveStock"

    # A restarted worker's sweep sends what was committed, one step at a time.
    stop = threading.Event()

    def sweep():
        while not stop.wait(0.2):
            saga_services.send_pending_replies()

    sweeper = threading.Thread(target=sweep, daemon=True)
    sweeper.start()
    try:
        finishes(order, status="CONFIRMED", execution="SUCCEEDED")
    finally:
        stop.set()
        sweeper.join()
    payment = Payment.objects.get(order_id=order.pk)
    assert payment.status == "CHARGED"
    assert SagaReply.objects.filter(order_id=order.pk, command="Charge Payment").count() == 1


def _state(order: Order) -> str:
    history = aws.client("stepfunctions").get_execution_history(executionArn=saga_services.execution_arn(order.pk))[
        "events"
    ]
    for event in reversed(history):
        if "stateEnteredEventDetails" in event:
            return event["stateEnteredEventDetails"]["name"]
    return ""
