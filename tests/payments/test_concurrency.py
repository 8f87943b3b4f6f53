"""The gateway call holds no transaction open: other writers get at the payment while it is in flight,
and deliveries racing on one payment still charge once. Each job runs on its own thread and database
connection; on SQLite the lock held would be the database's only write lock, on PostgreSQL the row's."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction

from eventbus.consuming import handle_message
from eventbus.event_types import INVENTORY_RESERVED
from eventbus.models import OutboxEvent, ProcessedEvent
from payments.gateways import SimulatedGateway, _configured
from payments.models import Payment, SimulatedGatewayRequest
from tests.events import envelope
from tests.helpers import on_both_databases, run_together
from tests.payments import settling

pytestmark = pytest.mark.django_db(transaction=True)

in_flight = threading.Event()
released = threading.Event()
released_in_time: list[bool] = []


class HeldGateway(SimulatedGateway):
    """Answers only once the test releases it (or after 10 s, when the release never comes)."""

    def charge(self, **kwargs):
        in_flight.set()
        released_in_time.append(released.wait(timeout=10))
        return super().charge(**kwargs)


@pytest.fixture
def held_gateway(settings):
    settings.PAYMENT_GATEWAY = "tests.payments.test_concurrency.HeldGateway"
    _configured.cache_clear()
    in_flight.clear()
    released.clear()
    released_in_time.clear()
    yield released_in_time
    _configured.cache_clear()


def placed(order_id: uuid.UUID) -> None:
    settling.remember_order(
        order_id=order_id, amount=Decimal("59.98"), currency="USD", payment_token="tok_visa", email="c@example.com"
    )


@on_both_databases
def test_another_transaction_locks_and_updates_the_payment_while_the_gateway_call_is_in_flight(
    database_vendor, held_gateway
):
    assert connection.vendor == database_vendor
    order_id = uuid.uuid4()
    placed(order_id)

    def another_writer() -> str:
        assert in_flight.wait(timeout=10)
        with transaction.atomic():
            payment = Payment.objects.select_for_update().get(order_id=order_id)
            Payment.objects.filter(pk=payment.pk).update(customer_email="changed@example.com")
        released.set()  # only reached if the lock was free while the gateway was still answering
        return "updated"

    charged, updated = run_together([lambda: settling.charge_reserved_order(order_id=order_id).status, another_writer])

    assert (charged, updated) == (Payment.Status.CHARGED, "updated")
    assert held_gateway == [True]  # the gateway was released by the other writer, not by its timeout


@on_both_databases
def test_deliveries_racing_on_one_payment_charge_once(database_vendor, settings):
    assert connection.vendor == database_vendor
    settings.PAYMENT_SIMULATED_LATENCY_MS = 200  # so the racing calls overlap
    _configured.cache_clear()
    order_id = uuid.uuid4()
    placed(order_id)
    body = envelope(INVENTORY_RESERVED, {"orderId": str(order_id), "items": [{"productId": "p-1", "quantity": 1}]})

    outcomes = run_together([lambda: handle_message(service="payments", body=body).result for _ in range(3)])

    _configured.cache_clear()
    assert all(outcome in ("processed", "duplicate") for outcome in outcomes), outcomes
    assert Payment.objects.get(order_id=order_id).status == Payment.Status.CHARGED
    assert SimulatedGatewayRequest.objects.filter(idempotency_key=str(order_id)).count() == 1
    assert OutboxEvent.objects.filter(correlation_id=str(order_id), detail_type="Payment Processed").count() == 1
    assert ProcessedEvent.objects.filter(handler="payments.charge_reserved_order").count() == 1
