from __future__ import annotations

import pytest

from payments.gateways import _configured
from tests.payments import recording_gateway


@pytest.fixture(autouse=True)
def recording(settings):
    """The simulated gateway, recording every call that reaches it; no crashes unless a test asks."""
    settings.PAYMENT_GATEWAY = "tests.payments.recording_gateway.RecordingGateway"
    recording_gateway.calls.clear()
    recording_gateway.crash_when = recording_gateway.never
    recording_gateway.charge_timeouts_left = 0
    _configured.cache_clear()
    yield recording_gateway.calls
    recording_gateway.crash_when = recording_gateway.never
    recording_gateway.charge_timeouts_left = 0
    _configured.cache_clear()


@pytest.fixture
def crash_at():
    """crash_at("after charge") makes the worker die there once."""

    def arm(*points: str) -> None:
        left = list(points)

        def crash_when(point: str) -> bool:
            if left and left[0] == point:
                left.pop(0)
                return True
            return False

        recording_gateway.crash_when = crash_when

    return arm
