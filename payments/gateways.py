"""Payment gateways. The default is a deterministic simulation; a real provider plugs in by setting
PAYMENT_GATEWAY to the dotted path of a class with the same two methods.

Payments calls a gateway outside any database transaction, and always with an idempotency key: a
gateway must answer a repeated key with the same parameters by returning the first answer (no new
charge), and refuse a repeated key with other parameters, as Stripe-like providers do
(docs/architecture.md, "Payments and the gateway").
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from eventbus.event_types import PaymentFailure
from eventbus.rows import insert_new_rows

from .models import SimulatedGatewayRequest


class GatewayError(Exception):
    """A transient failure (timeout, 5xx): the same call may succeed later."""


class GatewayRequestError(Exception):
    """The gateway refused the request itself (a reused idempotency key with other parameters, a refund
    of a charge it does not know): a bug on our side, which no retry fixes."""


@dataclass(frozen=True)
class ChargeResult:
    approved: bool
    reference: str
    decline_code: str = ""  # a PaymentFailure value when declined; a real provider's adapter maps to it
    message: str = ""


class PaymentGateway(Protocol):
    def charge(self, *, idempotency_key: str, amount: Decimal, currency: str, token: str) -> ChargeResult: ...

    def refund(self, *, idempotency_key: str, charge_reference: str, amount: Decimal, currency: str) -> str: ...


def _parameters(*values: object) -> str:
    return hashlib.sha256("\x1f".join(str(value) for value in values).encode()).hexdigest()


class SimulatedGateway:
    """Deterministic by token: `tok_visa` approves, `tok_chargeDeclined` declines, `tok_gatewayError`
    fails transiently, every time. For load runs, `latency_ms` and `decline_rate` apply to approvals.

    Like a real provider it remembers each idempotency key with its answer (in its own table,
    SimulatedGatewayRequest, so every worker thread and process shares it and it survives restarts):
    the same key with the same parameters gets the first answer back and makes no new charge; the same
    key with other parameters is refused. Each request is written in a transaction of its own, which
    refuses to nest in a caller's: a charge cannot be rolled back by the caller's database, so calling
    the gateway inside a transaction is an error here rather than a silent lie. A transient error is
    simulated as a request that never reached the provider: nothing is recorded, so a retry with the
    same key may charge."""

    def __init__(self, *, latency_ms: int = 0, decline_rate: float = 0.0) -> None:
        self.latency_ms = latency_ms
        self.decline_rate = decline_rate

    def _wait(self) -> None:
        # The network's time, spent holding nothing: no transaction is open here.
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)

    def _declined_by_rate(self, idempotency_key: str) -> bool:
        bucket = int.from_bytes(hashlib.sha256(idempotency_key.encode()).digest()[:4], "big") / 2**32
        return bucket < self.decline_rate

    def charge(self, *, idempotency_key: str, amount: Decimal, currency: str, token: str) -> ChargeResult:
        self._wait()
        if token == "tok_gatewayError":
            raise GatewayError("simulated gateway timeout")
        reference = f"ch_{uuid.uuid5(uuid.NAMESPACE_URL, 'charge:' + idempotency_key).hex[:24]}"
        if token == "tok_chargeDeclined" or self._declined_by_rate(idempotency_key):
            answer = {"approved": False, "decline_code": PaymentFailure.DECLINED, "message": "Your card was declined."}
        elif token != "tok_visa":
            answer = {
                "approved": False,
                "decline_code": PaymentFailure.INVALID_TOKEN,
                "message": "Unknown payment token.",
            }
        else:
            answer = {"approved": True}
        request = self._record(
            idempotency_key=idempotency_key,
            operation=SimulatedGatewayRequest.Operation.CHARGE,
            parameters=_parameters(f"{amount:.2f}", currency, token),
            answer={"reference": reference, **answer},
        )
        return ChargeResult(
            approved=request.approved,
            reference=request.reference,
            decline_code=request.decline_code,
            message=request.message,
        )

    def refund(self, *, idempotency_key: str, charge_reference: str, amount: Decimal, currency: str) -> str:
        self._wait()
        if not SimulatedGatewayRequest.objects.filter(
            operation=SimulatedGatewayRequest.Operation.CHARGE, reference=charge_reference, approved=True
        ).exists():
            raise GatewayRequestError(f"no such charge: {charge_reference!r}")
        request = self._record(
            idempotency_key=idempotency_key,
            operation=SimulatedGatewayRequest.Operation.REFUND,
            parameters=_parameters(charge_reference, f"{amount:.2f}", currency),
            answer={
                "approved": True,
                "reference": f"re_{uuid.uuid5(uuid.NAMESPACE_URL, 'refund:' + idempotency_key).hex[:24]}",
            },
        )
        return request.reference

    def _record(
        self, *, idempotency_key: str, operation: str, parameters: str, answer: dict
    ) -> SimulatedGatewayRequest:
        """The first answer for the key, recorded now if this is the first request with it. One INSERT
        … ON CONFLICT DO NOTHING answers "first?": a concurrent request with the same key waits on the
        unique index, and then this one reads the answer it recorded."""
        row = {"idempotency_key": idempotency_key, "operation": operation, "parameters": parameters, **answer}
        with transaction.atomic(durable=True):
            if insert_new_rows(SimulatedGatewayRequest, [row], conflict=["idempotency_key"], returning="id"):
                request = SimulatedGatewayRequest(**row)
            else:
                request = SimulatedGatewayRequest.objects.get(idempotency_key=idempotency_key)
        if (request.operation, request.parameters) != (operation, parameters):
            raise GatewayRequestError(f"idempotency key {idempotency_key!r} was used with other parameters")
        return request


@cache
def _configured(path: str, latency_ms: int, decline_rate: float) -> PaymentGateway:
    gateway_class = import_string(path)
    if issubclass(gateway_class, SimulatedGateway):
        return gateway_class(latency_ms=latency_ms, decline_rate=decline_rate)
    return gateway_class()


def get_gateway() -> PaymentGateway:
    return _configured(
        settings.PAYMENT_GATEWAY, settings.PAYMENT_SIMULATED_LATENCY_MS, settings.PAYMENT_SIMULATED_DECLINE_RATE
    )
