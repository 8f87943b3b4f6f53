"""The reply outbox: an answer is kept with the step's work and sent after commit, at least once;
an answer the execution no longer waits for is dropped, once, with a log line."""

from __future__ import annotations

import logging
import uuid

import pytest
from botocore.stub import Stubber
from django.db import transaction

from eventbus import aws
from eventbus.models import SweepFailure
from sagas import services
from sagas.models import SagaReply
from tests.helpers import poison, skipped_items

pytestmark = pytest.mark.django_db(transaction=True)


def record(**overrides) -> SagaReply:
    values = {
        "task_token": f"token-{uuid.uuid4()}",
        "order_id": uuid.uuid4(),
        "command": "Charge Payment",
        "succeeded": True,
        "output": {"paymentId": "p-1"},
    }
    values.update(overrides)
    with transaction.atomic():
        return services.record_reply(**values)


@pytest.fixture
def stepfunctions():
    client = aws.client("stepfunctions")
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_a_reply_is_sent_after_its_transaction_commits(stepfunctions):
    stepfunctions.add_response("send_task_success", {}, {"taskToken": "token-a", "output": '{"paymentId": "p-1"}'})
    reply = record(task_token="token-a")
    reply.refresh_from_db()
    assert (reply.status, reply.attempts) == ("SENT", 1)


def test_a_rolled_back_step_sends_no_reply(stepfunctions):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.record_reply(task_token="token-b", order_id=uuid.uuid4(), command="Reserve Stock", succeeded=True)
        raise RuntimeError("the step's work failed")
    assert not SagaReply.objects.exists()


def test_a_failure_is_sent_with_its_error_and_cause(stepfunctions):
    stepfunctions.add_response(
        "send_task_failure", {}, {"taskToken": "token-c", "error": "PAYMENT_FAILED", "cause": "Your card was declined."}
    )
    record(task_token="token-c", succeeded=False, error="PAYMENT_FAILED", cause="Your card was declined.")
    assert SagaReply.objects.get().status == "SENT"


def test_a_reply_that_could_not_be_sent_is_sent_by_the_sweep(stepfunctions):
    stepfunctions.add_client_error("send_task_success", service_error_code="ThrottlingException")
    reply = record(task_token="token-d")
    reply.refresh_from_db()
    assert reply.status == "PENDING" and "ThrottlingException" in reply.last_error

    SagaReply.objects.filter(pk=reply.pk).update(next_attempt_at=reply.created_at)  # its backoff is over
    stepfunctions.add_response("send_task_success", {}, {"taskToken": "token-d", "output": '{"paymentId": "p-1"}'})
    assert services.send_pending_replies() == 1
    assert SagaReply.objects.get().status == "SENT"


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"])
def test_a_late_or_repeated_reply_is_dropped_and_logged_not_retried(stepfunctions, caplog, code):
    stepfunctions.add_client_error("send_task_success", service_error_code=code)
    with caplog.at_level(logging.WARNING, logger="sagas.services"):
        reply = record(task_token="token-e")
    reply.refresh_from_db()
    assert reply.status == "DROPPED"
    assert f"no longer waits for it ({code})" in caplog.text
    assert services.send_pending_replies() == 0  # nothing to retry: the stubber would fail on any call


def test_recording_the_same_token_twice_keeps_the_first_answer(stepfunctions):
    stepfunctions.add_response("send_task_success", {}, {"taskToken": "token-f", "output": '{"paymentId": "p-1"}'})
    record(task_token="token-f")
    again = record(task_token="token-f", succeeded=False, error="PAYMENT_FAILED")
    assert again.succeeded and SagaReply.objects.count() == 1


def test_a_reply_that_cannot_be_read_is_skipped_and_the_others_are_sent(stepfunctions, caplog):
    replies = [
        SagaReply.objects.create(
            task_token=f"token-sweep-{n}", order_id=uuid.uuid4(), command="Charge Payment", succeeded=True
        )
        for n in range(3)
    ]
    poison(SagaReply, replies[1].pk, created_at="2020-13-45 00:00:00")  # month 13: ValueError when read
    for reply in (replies[0], replies[2]):
        stepfunctions.add_response("send_task_success", {}, {"taskToken": reply.task_token, "output": "{}"})

    with caplog.at_level(logging.ERROR, logger="eventbus.sweeps"):
        assert services.send_pending_replies() == 2

    statuses = dict(SagaReply.objects.values_list("pk", "status"))
    assert [statuses[reply.pk] for reply in replies] == ["SENT", "PENDING", "SENT"]
    assert [r.getMessage() for r in caplog.records if str(replies[1].pk) in r.getMessage()]
    assert SweepFailure.objects.get(sweep="send-saga-replies").item == str(replies[1].pk)
    assert skipped_items("send-saga-replies") == 1
