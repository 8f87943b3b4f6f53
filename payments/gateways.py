"""Payment gateways. The default is a deterministic simulation; a real provider plugs in by setting
PAYMENT_GATEWAY to the dotted path of a class with the same two methods."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


class GatewayError(Exception):
    """A transient failure (timeout, 5xx): the same call may succeed later."""


@dataclass(frozen=True)
class ChargeResult:
    approved: bool
    reference: str
    decline_code: str = ""
    message: str = ""


class PaymentGateway(Protocol):
    def charge(self, *, idempotency_key: str, amount: Decimal, currency: str, token: str) -> ChargeResult: ...

    def refund(self, *, idempotency_key: str, charge_reference: str, amount: Decimal, currency: str) -> str: ...


class SimulatedGateway:
    """Deterministic by token: `tok_visa` approves, `tok_chargeDeclined` declines, `tok_gatewayError`
    fails transiently. The same idempotency key always gets the same answer and reference, like a real
    provider's idempotent API. For load runs, `latency_ms` and `decline_rate` apply to approvals."""

    def __init__(self, *, latency_ms: int = 0, decline_rate: float = 0.0) -> None:
        self.latency_ms = latency_ms
        self.decline_rate = decline_rate

    def _wait(self) -> None:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)

    def _declined_by_rate(self, idempotency_key: str) -> bool:
        bucket = int.from_bytes(hashlib.sha256(idempotency_key.encode()).digest()[:4], "big") / 2**32
        return bucket < self.decline_rate

    def charge(self, *, idempotency_key: str, amount: Decimal, currency: str, token: str) -> ChargeResult:
        self._wait()
        reference = f"ch_{uuid.uuid5(uuid.NAMESPACE_URL, 'charge:' + idempotency_key).hex[:24]}"
        if token == "tok_gatewayError":
            raise GatewayError("simulated gateway timeout")
        if token == "tok_chargeDeclined" or self._declined_by_rate(idempotency_key):
            return ChargeResult(
                approved=False, reference=reference, decline_code="DECLINED", message="Your card was declined."
            )
        if token != "tok_visa":
            return ChargeResult(
                approved=False, reference=reference, decline_code="INVALID_TOKEN", message="Unknown payment token."
            )
        return ChargeResult(approved=True, reference=reference)

    def refund(self, *, idempotency_key: str, charge_reference: str, amount: Decimal, currency: str) -> str:
        self._wait()
        return f"re_{uuid.uuid5(uuid.NAMESPACE_URL, 'refund:' + idempotency_key).hex[:24]}"


@cache
def _configured(path: str, latency_ms: int, decline_rate: float) -> PaymentGateway:
    gateway_class = import_string(path)
    if gateway_class is SimulatedGateway:
        return SimulatedGateway(latency_ms=latency_ms, decline_rate=decline_rate)
    return gateway_class()


def get_gateway() -> PaymentGateway:
    return _configured(
        settings.PAYMENT_GATEWAY, settings.PAYMENT_SIMULATED_LATENCY_MS, settings.PAYMENT_SIMULATED_DECLINE_RATE
    )
