"""A systematic search of the saga: for one order, Hypothesis chooses the order in which every pending
delivery is handled, duplicates deliveries, may have the customer cancel at any point, and may kill
the payments worker around any gateway call (after the attempt committed, or after the gateway
answered but before the answer committed). Each delivery goes through the real consumer path (schema
check, ProcessedEvent dedupe, handler) with the envelope built from the real outbox row, alone or in
one receive with other pending deliveries to its queue (batches and sets); a delivery that fails
stays pending, as its unacknowledged message would come back. At quiescence, the invariants must
hold."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventbus import registry
from eventbus.consuming import handle_batch
from eventbus.models import OutboxEvent
from eventbus.state_machine import IllegalTransition
from orders import services as order_services
from orders.models import Order
from payments.gateways import _configured
from tests.events import delivery_of
from tests.factories import OrderItemFactory, PlaceOrderRequestFactory, ProductFactory
from tests.payments import recording_gateway
from tests.saga_checks import assert_settled_consistently, received_with

# On both databases: the saga locks each order with SQL that SQLite ignores.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]

SAGA_SERVICES = ("orders", "inventory", "payments")
ON_HAND = 3
CUSTOMER_CANCEL = "customer-cancel"


def deliveries_for(rows: list[OutboxEvent]) -> list[tuple[str, OutboxEvent]]:
    return [
        (service, row)
        for row in rows
        for service in SAGA_SERVICES
        if registry.subscription_for(service, row.source, row.detail_type)
    ]


def run_saga(data: st.DataObject) -> Order:
    sku = f"saga-{uuid.uuid4().hex[:10]}"
    ProductFactory(sku=sku, stock__on_hand=ON_HAND)
    quantity = data.draw(st.integers(1, ON_HAND + 1), label="quantity")  # ON_HAND + 1 runs out of stock
    token = data.draw(st.sampled_from(["tok_visa", "tok_chargeDeclined", "tok_gatewayError"]), label="token")
    order = order_services.place_order(
        request=PlaceOrderRequestFactory(
            items=[OrderItemFactory(product_id=sku, quantity=quantity)], payment_token=token
        )
    )
    seen: set[uuid.UUID] = set()

    def new_rows() -> list[OutboxEvent]:
        rows = [
            row
            for row in OutboxEvent.objects.filter(correlation_id=str(order.pk)).order_by("created_at")
            if row.id not in seen
        ]
        seen.update(row.id for row in rows)
        return rows

    pending: list = deliveries_for(new_rows())
    if data.draw(st.booleans(), label="customer cancels"):
        pending.append(CUSTOMER_CANCEL)
    duplicates_left = data.draw(st.integers(0, 4), label="duplicates")
    crashes_left = data.draw(st.integers(0, 3), label="crashes")

    def crash_when(point: str) -> bool:
        nonlocal crashes_left
        if crashes_left and data.draw(st.booleans(), label=f"die {point}"):
            crashes_left -= 1
            return True
        return False

    recording_gateway.crash_when = crash_when
    while pending:
        delivery = pending.pop(data.draw(st.integers(0, len(pending) - 1), label="next"))
        if delivery == CUSTOMER_CANCEL:
            # Already cancelled or shipped: the API answers 409.
            with contextlib.suppress(IllegalTransition):
                order_services.cancel_order(order_id=order.pk, reason_code="CUSTOMER_REQUEST", reason="changed my mind")
        else:
            service, row = delivery
            if duplicates_left and data.draw(st.booleans(), label="duplicate it"):
                duplicates_left -= 1
                pending.append(delivery)
            # A worker may receive it with other pending deliveries to the same queue, in any order:
            # the batches and sets must end as one message at a time would.
            receive = [
                delivery,
                *received_with(
                    data, pending, [other for other in pending if other != CUSTOMER_CANCEL and other[0] == service]
                ),
            ]
            outcomes = handle_batch(service=service, bodies=[delivery_of(received_row) for _, received_row in receive])
            for received, outcome in zip(receive, outcomes, strict=True):
                if not outcome.acknowledged:
                    # Only a dead worker or a gateway error may fail a delivery; its message comes back.
                    assert outcome.note.startswith(("Crash:", "GatewayError:")), f"{service}: {outcome.note}"
                    pending.append(received)
        pending.extend(deliveries_for(new_rows()))
    order.refresh_from_db()
    return order


@pytest.fixture
def dying_gateway(settings):
    """The simulated gateway, around whose calls the search may kill the worker."""
    settings.PAYMENT_GATEWAY = "tests.payments.recording_gateway.RecordingGateway"
    _configured.cache_clear()
    yield
    recording_gateway.crash_when = recording_gateway.never
    _configured.cache_clear()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_every_interleaving_duplication_and_crash_keeps_the_saga_consistent(data, dying_gateway):
    order = run_saga(data)
    # The order reaches a final state every service agrees on, stock is conserved, at most one
    # charge (the provider's own ledger agrees), and a refund exactly when a charge was followed by a
    # cancel.
    assert_settled_consistently(order, on_hand=ON_HAND)
