"""With ORDER_SAGA=stepfunctions, the stuck-order sweep leaves an order to its running execution and
cancels one whose execution never started or ended without finishing it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import EndpointConnectionError
from django.utils import timezone

from eventbus import aws
from orders import services
from orders.models import Order
from sagas import services as saga_services
from tests.events import order_placed_data
from tests.factories import PlaceOrderRequestFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def stepfunctions_mode(settings, provisioned, catalogue):
    settings.ORDER_SAGA = "stepfunctions"


def stuck_order() -> Order:
    order = services.place_order(request=PlaceOrderRequestFactory())
    Order.objects.filter(pk=order.pk).update(status_changed_at=timezone.now() - timedelta(hours=1))
    return order


def test_an_order_whose_execution_never_started_is_cancelled_as_timed_out(stepfunctions_mode):
    order = stuck_order()

    assert services.cancel_stuck_orders() == [order.pk]

    order.refresh_from_db()
    assert (order.status, order.cancellation_reason_code) == (Order.Status.CANCELLED, "TIMEOUT")


def test_an_order_whose_execution_runs_is_left_to_it_and_one_stopped_is_cancelled(stepfunctions_mode):
    running, stopped = stuck_order(), stuck_order()
    for order in (running, stopped):
        saga_services.start_execution(order_id=order.pk, order=order_placed_data(order.pk))
    aws.client("stepfunctions").stop_execution(executionArn=saga_services.execution_arn(stopped.pk))

    assert services.cancel_stuck_orders() == [stopped.pk]

    running.refresh_from_db()
    assert running.status == Order.Status.PLACED


def test_aws_that_cannot_be_asked_cancels_nothing(stepfunctions_mode, settings):
    order = stuck_order()
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there

    with pytest.raises(EndpointConnectionError):
        services.cancel_stuck_orders()

    order.refresh_from_db()
    assert order.status == Order.Status.PLACED
