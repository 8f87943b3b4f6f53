"""A receive's payments settle together: one transaction records every change and attempt, the
gateway is called for each outside any transaction, and the answers are recorded together unless
the gateway is slow. Each piece of news still succeeds or fails on its own, and a receive is
handled in its order."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import partial

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from eventbus.consuming import DeliveryResult, handle_batch, handle_message
from eventbus.event_types import CHARGE_PAYMENT, INVENTORY_RESERVED, ORDER_CANCELLED, ORDER_PLACED
from eventbus.events import parse_envelope
from eventbus.models import OutboxEvent
from payments import handlers, services
from payments.gateways import ChargeResult, GatewayError, SimulatedGateway, _configured
from payments.models import Payment, SimulatedGatewayRequest
from sagas.definition import TRANSIENT
from sagas.models import SagaReply
from tests.events import SAMPLE_DATA, envelope, order_placed_data
from tests.helpers import run_together

# On both databases: the set locks its payments with SQL that SQLite ignores.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]


def placed(order_id: uuid.UUID, token: str = "tok_visa") -> services.OrderNews:
    return services.order_placed(
        order_id=order_id, amount=Decimal("59.98"), currency="USD", payment_token=token, email="c@example.com"
    )


def reserved_body(order_id: uuid.UUID) -> str:
    return envelope(INVENTORY_RESERVED, {"orderId": str(order_id), "items": [{"productId": "prod-1", "quantity": 2}]})


def payments_selects(queries: CaptureQueriesContext) -> int:
    return sum(
        1 for query in queries if query["sql"].startswith("SELECT") and 'FROM "payments_payment"' in query["sql"]
    )


class ObservingGateway(SimulatedGateway):
    """Notes `count()` at each charge, and declines `tok_unrecordable` with a code the Payment Failed
    schema refuses, so recording that answer fails at its event; every other charge is as usual."""

    count: Callable[[], int] = staticmethod(lambda: 0)
    seen_before_each_call: list[int] = []

    def charge(self, **kwargs):
        self.seen_before_each_call.append(type(self).count())
        if kwargs["token"] == "tok_unrecordable":
            return ChargeResult(approved=False, reference="ch_odd", decline_code="NOT_A_CODE", message="?")
        return super().charge(**kwargs)


@pytest.fixture
def observing_gateway(settings):
    """Installs ObservingGateway; set its `count` to what each charge should note."""
    settings.PAYMENT_GATEWAY = "tests.payments.test_sets.ObservingGateway"
    ObservingGateway.seen_before_each_call = []
    _configured.cache_clear()
    yield ObservingGateway
    ObservingGateway.count = staticmethod(lambda: 0)
    _configured.cache_clear()


@pytest.fixture
def counting_gateway(observing_gateway):
    """How many charges were already recorded as Payment Processed, at each charge."""
    observing_gateway.count = staticmethod(OutboxEvent.objects.filter(detail_type="Payment Processed").count)
    return observing_gateway.seen_before_each_call


@pytest.fixture
def unrecordable_decline(observing_gateway):
    return observing_gateway


@pytest.mark.parametrize(
    ("hold_ms", "recorded_before_each_call", "payment_reads"),
    [
        # A fast gateway: the answers wait for each other and go in with one read and one transaction.
        (60_000, [0, 0, 0, 0], 1 + 1),
        # A slow one (every call outlasts a hold of 0): each answer is recorded before the next call.
        (0, [0, 1, 2, 3], 1 + 4),
    ],
    ids=["fast-gateway", "slow-gateway"],
)
def test_a_receive_of_charges_locks_its_payments_once_and_records_answers_together_unless_the_gateway_is_slow(
    counting_gateway, settings, hold_ms, recorded_before_each_call, payment_reads
):
    settings.PAYMENT_ANSWER_HOLD_MS = hold_ms
    orders = sorted(uuid.uuid4() for _ in range(4))
    services.settle(news=[placed(order_id) for order_id in orders])

    with CaptureQueriesContext(connection) as queries:
        outcomes = handle_batch(service="payments", bodies=[reserved_body(order_id) for order_id in orders])

    assert [(outcome.result, outcome.note) for outcome in outcomes] == [
        (DeliveryResult.PROCESSED, Payment.Status.CHARGED)
    ] * 4
    # One read (with its lock) for the whole receive's changes, where each message took its own.
    assert payments_selects(queries) == payment_reads
    assert counting_gateway == recorded_before_each_call


def test_each_charge_names_the_event_that_caused_it(recording):
    orders = [uuid.uuid4() for _ in range(2)]
    services.settle(news=[placed(order_id) for order_id in orders])
    bodies = [reserved_body(order_id) for order_id in orders]

    handle_batch(service="payments", bodies=bodies)

    caused = {
        row.detail["data"]["orderId"]: row.detail["metadata"]["causationId"]
        for row in OutboxEvent.objects.filter(detail_type="Payment Processed")
    }
    assert caused == {
        str(order_id): json.loads(body)["detail"]["metadata"]["eventId"]
        for order_id, body in zip(orders, bodies, strict=True)
    }


def placed_body(order_id: uuid.UUID) -> str:
    return envelope(ORDER_PLACED, order_placed_data(order_id))


def cancelled_body(order_id: uuid.UUID) -> str:
    return envelope(ORDER_CANCELLED, {**SAMPLE_DATA["Order Cancelled"], "orderId": str(order_id)})


@pytest.mark.parametrize("late", ["Order Placed", "Inventory Reserved"])
@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "together"])
def test_a_cancel_ahead_of_its_orders_news_in_a_receive_voids_it_together_as_one_by_one(recording, late, together):
    # The late event has a set of its own kind ahead of the cancel (another order's), so grouping the
    # receive by handler would take it before the cancel: X would be charged, then refunded.
    x, y = uuid.uuid4(), uuid.uuid4()
    news_of = placed_body if late == "Order Placed" else reserved_body
    known_first = reserved_body if late == "Order Placed" else placed_body
    for order_id in (x, y):
        handle_message(service="payments", body=known_first(order_id))
    bodies = [news_of(y), cancelled_body(x), news_of(x)]

    if together:
        outcomes = handle_batch(service="payments", bodies=bodies)
    else:
        outcomes = [handle_message(service="payments", body=body) for body in bodies]

    assert [outcome.result for outcome in outcomes] == [DeliveryResult.PROCESSED] * 3
    assert Payment.objects.get(order_id=x).status == Payment.Status.VOIDED
    assert recording == [("charge", str(y))]


def test_an_order_reserved_and_cancelled_in_one_set_is_voided_and_never_charged(recording):
    order_id = uuid.uuid4()
    services.settle(news=[placed(order_id)])

    results = services.settle(
        news=[services.stock_reserved(order_id=order_id), services.order_cancelled(order_id=order_id)]
    )

    assert [result.status for result in results] == [Payment.Status.VOIDED] * 2
    assert recording == []


def test_news_that_fails_fails_alone_and_the_rest_of_its_set_settles(recording):
    first, broken, last = orders = [uuid.uuid4() for _ in range(3)]
    services.settle(news=[placed(order_id) for order_id in orders])

    def refuse(payment: Payment) -> None:
        raise ValueError("unreadable news")

    results = services.settle(
        news=[
            services.stock_reserved(order_id=first),
            services.OrderNews(order_id=broken, change=refuse),
            services.stock_reserved(order_id=last),
        ]
    )

    assert [getattr(result, "status", repr(result)) for result in results] == [
        Payment.Status.CHARGED,
        "ValueError('unreadable news')",
        Payment.Status.CHARGED,
    ]
    assert [Payment.objects.get(order_id=order_id).status for order_id in orders] == [
        Payment.Status.CHARGED,
        Payment.Status.PENDING,
        Payment.Status.CHARGED,
    ]


def test_an_answer_that_cannot_be_recorded_leaves_the_others_recorded(unrecordable_decline, settings):
    settings.PAYMENT_ANSWER_HOLD_MS = 60_000  # the three answers are recorded together, and fail together
    first, odd, last = orders = sorted(uuid.uuid4() for _ in range(3))
    services.settle(news=[placed(first), placed(odd, token="tok_unrecordable"), placed(last)])

    results = services.settle(news=[services.stock_reserved(order_id=order_id) for order_id in orders])

    assert isinstance(results[1], Exception)
    assert [results[0].status, results[2].status] == [Payment.Status.CHARGED] * 2
    # The odd one's attempt stays recorded: its redelivery asks again, with the same key.
    assert [Payment.objects.get(order_id=order_id).status for order_id in orders] == [
        Payment.Status.CHARGED,
        Payment.Status.CHARGING,
        Payment.Status.CHARGED,
    ]
    assert OutboxEvent.objects.filter(detail_type="Payment Processed").count() == 2


def test_a_gateway_error_fails_only_the_news_of_its_own_payment(recording):
    good, failing = orders = [uuid.uuid4() for _ in range(2)]
    services.settle(news=[placed(good), placed(failing, token="tok_gatewayError")])

    results = services.settle(news=[services.stock_reserved(order_id=order_id) for order_id in orders])

    assert results[0].status == Payment.Status.CHARGED
    assert isinstance(results[1], GatewayError)
    assert Payment.objects.get(order_id=failing).charge_attempts == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_settling_the_same_orders_in_opposite_orders_never_deadlock_and_charge_once(
    never_one_by_one,
):
    # Each set locks its payments in order-id order whatever order its news came in, so the two wait
    # for each other instead of each holding half; the second finds the charges begun and asks the
    # gateway again with the same keys, which answers with the first answer.
    for _ in range(5):
        orders = [uuid.uuid4() for _ in range(6)]
        services.settle(news=[placed(order_id) for order_id in orders])
        news = [services.stock_reserved(order_id=order_id) for order_id in orders]

        results = run_together([partial(services.settle, news=news), partial(services.settle, news=news[::-1])])

        assert [[payment.status for payment in result] for result in results] == [[Payment.Status.CHARGED] * 6] * 2
        assert SimulatedGatewayRequest.objects.filter(idempotency_key__in=[str(o) for o in orders]).count() == 6
        assert OutboxEvent.objects.filter(detail_type="Payment Processed", correlation_id__in=orders).count() == 6


def test_an_event_whose_news_cannot_be_read_fails_alone_and_the_rest_of_its_set_settles(recording):
    # The schema refuses such an event before any handler sees it; the handler does not rely on that.
    readable, unreadable = (parse_envelope(placed_body(uuid.uuid4())) for _ in range(2))
    del unreadable.data["totalAmount"]

    statuses = handlers.remember_order([unreadable, readable])

    assert isinstance(statuses[0], KeyError)
    assert statuses[1] == Payment.Status.PENDING
    assert Payment.objects.get(order_id=readable.order_id).amount == Decimal("2.00")


def charge_command(order_id: uuid.UUID, *, token: str) -> str:
    return envelope(
        CHARGE_PAYMENT,
        {
            "orderId": str(order_id),
            "taskToken": f"task-{order_id}",
            "amount": "59.98",
            "currency": "USD",
            "paymentToken": token,
            "email": "c@example.com",
        },
    )


def test_the_orchestrated_sagas_charge_commands_settle_together_and_each_is_answered(recording, settings):
    settings.ORDER_SAGA = "stepfunctions"
    settings.PAYMENT_ANSWER_HOLD_MS = 60_000
    charged, failing = sorted(uuid.uuid4() for _ in range(2))
    bodies = [charge_command(charged, token="tok_visa"), charge_command(failing, token="tok_gatewayError")]

    with CaptureQueriesContext(connection) as queries:
        outcomes = handle_batch(service="payments", bodies=bodies)

    # A transient gateway error is the state machine's to retry: the command is answered, and done.
    assert [(outcome.result, outcome.note) for outcome in outcomes] == [
        (DeliveryResult.PROCESSED, Payment.Status.CHARGED),
        (DeliveryResult.PROCESSED, "gateway error: simulated gateway timeout"),
    ]
    assert payments_selects(queries) == 1 + 1
    replies = {reply.order_id: reply for reply in SagaReply.objects.all()}
    assert replies[charged].succeeded
    assert replies[charged].output == {"paymentId": str(Payment.objects.get(order_id=charged).id)}
    assert (replies[failing].succeeded, replies[failing].error) == (False, TRANSIENT)


@pytest.fixture
def counting_replies(observing_gateway, settings):
    """How many commands were already answered, at each charge."""
    settings.ORDER_SAGA = "stepfunctions"
    observing_gateway.count = staticmethod(SagaReply.objects.count)
    return observing_gateway.seen_before_each_call


def test_a_slow_gateway_answers_each_command_before_the_sets_next_call(counting_replies, settings):
    # A step's answer is on the saga's critical path: it must not wait for the other commands' calls.
    settings.PAYMENT_ANSWER_HOLD_MS = 0
    orders = sorted(uuid.uuid4() for _ in range(3))

    outcomes = handle_batch(service="payments", bodies=[charge_command(o, token="tok_visa") for o in orders])

    assert [outcome.note for outcome in outcomes] == [Payment.Status.CHARGED] * 3
    assert counting_replies == [0, 1, 2]
    assert SagaReply.objects.filter(succeeded=True).count() == 3


def test_a_command_whose_answer_cannot_be_recorded_fails_alone_and_the_others_are_answered(counting_replies, settings):
    settings.PAYMENT_ANSWER_HOLD_MS = 60_000  # recorded together first, then one by one
    first, odd, last = orders = sorted(uuid.uuid4() for _ in range(3))
    tokens = {first: "tok_visa", odd: "tok_unrecordable", last: "tok_visa"}

    outcomes = handle_batch(service="payments", bodies=[charge_command(o, token=tokens[o]) for o in orders])

    assert [outcome.result for outcome in outcomes] == [
        DeliveryResult.PROCESSED,
        DeliveryResult.FAILED,
        DeliveryResult.PROCESSED,
    ]
    assert sorted(SagaReply.objects.values_list("order_id", "succeeded")) == sorted([(first, True), (last, True)])
