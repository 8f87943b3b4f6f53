"""A stand-in for an external provider that remembers every call that reached it, and can make the
calling worker die around a call, for the crash tests."""

from __future__ import annotations

from collections.abc import Callable

from payments.gateways import GatewayError, SimulatedGateway

calls: list[tuple[str, str]] = []
# How many of the next charges time out before they reach the provider (a transient GatewayError).
charge_timeouts_left = 0


class Crash(Exception):
    """The worker dying at a point of our choosing. Payments records nothing for a call that raises
    anything but a GatewayError, so for its payment this is a dead process: whatever was committed
    stays, nothing after it runs, and the consumer leaves the message for a redelivery."""


def never(point: str) -> bool:
    return False


# Asked at "before charge" (the attempt is committed, the request not sent), "after charge" (the
# provider charged, the answer is not recorded), and the same for refunds; True makes the worker die.
crash_when: Callable[[str], bool] = never


def _maybe_crash(point: str) -> None:
    if crash_when(point):
        raise Crash(point)


class RecordingGateway(SimulatedGateway):
    def charge(self, **kwargs):
        global charge_timeouts_left
        _maybe_crash("before charge")
        if charge_timeouts_left:
            charge_timeouts_left -= 1
            raise GatewayError("the provider did not answer in time (simulated)")
        calls.append(("charge", kwargs["idempotency_key"]))
        result = super().charge(**kwargs)
        _maybe_crash("after charge")
        return result

    def refund(self, **kwargs):
        _maybe_crash("before refund")
        calls.append(("refund", kwargs["idempotency_key"]))
        reference = super().refund(**kwargs)
        _maybe_crash("after refund")
        return reference
