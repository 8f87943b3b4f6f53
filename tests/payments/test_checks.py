from __future__ import annotations

import pytest

from payments.checks import gateway_attempts_fit_the_queue


@pytest.mark.parametrize(("attempts", "receives", "ok"), [(3, 5, True), (4, 5, True), (5, 5, False), (0, 5, False)])
def test_payments_gives_up_on_the_gateway_before_sqs_gives_up_on_the_message(settings, attempts, receives, ok):
    settings.PAYMENT_MAX_GATEWAY_ATTEMPTS, settings.SQS_MAX_RECEIVE_COUNT = attempts, receives
    errors = gateway_attempts_fit_the_queue()
    assert (errors == []) is ok
    assert all(error.id == "payments.E001" for error in errors)
