"""A stand-in for an external provider that remembers every call, for counting charges in tests."""

from __future__ import annotations

from payments.gateways import SimulatedGateway

calls: list[tuple[str, str]] = []


class RecordingGateway(SimulatedGateway):
    def charge(self, **kwargs):
        calls.append(("charge", kwargs["idempotency_key"]))
        return super().charge(**kwargs)

    def refund(self, **kwargs):
        calls.append(("refund", kwargs["idempotency_key"]))
        return super().refund(**kwargs)
