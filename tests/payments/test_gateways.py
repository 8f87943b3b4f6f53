"""The simulated gateway answers idempotency keys the way Stripe-like providers do, from a ledger that
every worker thread and process shares."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from payments.gateways import GatewayError, GatewayRequestError, SimulatedGateway
from payments.models import SimulatedGatewayRequest
from tests.helpers import run_together

pytestmark = pytest.mark.django_db

USD = {"currency": "USD"}


def charge(gateway: SimulatedGateway, key: str = "order-1", amount: str = "59.98", token: str = "tok_visa"):
    return gateway.charge(idempotency_key=key, amount=Decimal(amount), token=token, **USD)


def test_the_same_key_and_parameters_get_the_first_answer_and_no_new_charge():
    first = charge(SimulatedGateway())
    # Another instance, as in another worker or after a restart: the ledger is the provider's memory.
    again = charge(SimulatedGateway(), amount="59.980")

    assert first == again
    assert first.approved
    assert SimulatedGatewayRequest.objects.filter(idempotency_key="order-1").count() == 1


def test_the_same_key_with_other_parameters_is_refused():
    charge(SimulatedGateway())
    with pytest.raises(GatewayRequestError, match="other parameters"):
        charge(SimulatedGateway(), amount="60.00")
    with pytest.raises(GatewayRequestError, match="other parameters"):
        charge(SimulatedGateway(), token="tok_chargeDeclined")


def test_a_decline_is_remembered_like_an_approval():
    declined = charge(SimulatedGateway(), token="tok_chargeDeclined")
    assert (declined.approved, declined.decline_code) == (False, "DECLINED")
    assert charge(SimulatedGateway(), token="tok_chargeDeclined") == declined


def test_a_transient_error_records_nothing_so_a_retry_may_charge():
    with pytest.raises(GatewayError):
        charge(SimulatedGateway(), token="tok_gatewayError")
    assert not SimulatedGatewayRequest.objects.exists()


def test_a_refund_is_idempotent_and_only_of_a_charge_the_provider_made():
    gateway = SimulatedGateway()
    with pytest.raises(GatewayRequestError, match="no such charge"):
        gateway.refund(idempotency_key="refund:order-1", charge_reference="ch_nothing", amount=Decimal("1.00"), **USD)
    reference = charge(gateway).reference

    refunds = [
        gateway.refund(idempotency_key="refund:order-1", charge_reference=reference, amount=Decimal("59.98"), **USD)
        for _ in range(2)
    ]

    assert refunds[0] == refunds[1]
    assert SimulatedGatewayRequest.objects.filter(operation="refund").count() == 1
    with pytest.raises(GatewayRequestError, match="other parameters"):
        gateway.refund(idempotency_key="refund:order-1", charge_reference=reference, amount=Decimal("1.00"), **USD)


def test_it_refuses_to_be_called_inside_the_caller_s_transaction():
    # A provider's charge cannot be rolled back with the caller's database; the simulator says so.
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        charge(SimulatedGateway())


def test_it_is_deterministic_and_declines_at_the_configured_rate():
    gateway = SimulatedGateway(decline_rate=0.25)
    outcomes = [charge(gateway, key=str(n), amount="1.00").approved for n in range(400)]
    assert 0.15 < outcomes.count(False) / len(outcomes) < 0.35
    assert outcomes == [charge(gateway, key=str(n), amount="1.00").approved for n in range(400)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_charge_once():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: `make test` runs it against a throwaway server")
    answers = run_together([lambda: charge(SimulatedGateway()) for _ in range(6)])

    assert len(set(answers)) == 1, answers
    assert SimulatedGatewayRequest.objects.count() == 1
