"""The admin's dead-letter page: one row per failing event with where it stands, and a redrive that
only those allowed can run, recorded in the row's History."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client

from eventbus import topology
from eventbus.models import DeliveryFailure
from orders.models import Order
from tests.helpers import dead_lettered_order, poll_queue, queue_depth, staff_client

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS = topology.SERVICE_QUEUES["orders"]


def redrive(client: Client) -> object:
    return client.post(
        "/admin/eventbus/deliveryfailure/redrive/", {"queue": ORDERS.name, "max_messages": "10"}, follow=True
    )


def states(client: Client) -> list[str]:
    response = client.get("/admin/eventbus/deliveryfailure/")
    return [failure.current.state for failure in response.context["cl"].result_list]


def test_staff_redrive_a_dlq_and_the_failing_event_is_resolved(catalogue, quiet_relay, settings):
    order = dead_lettered_order(settings)
    operator = staff_client(superuser=True)
    page = operator.get("/admin/eventbus/deliveryfailure/").content.decode()
    assert "Redrive to orders" in page
    assert states(operator) == ["failing"]

    order.save(force_insert=True)  # restored
    response = redrive(operator)
    assert f"Moved 1 message(s) from {ORDERS.dlq_name} back to {ORDERS.name}." in response.content.decode()
    assert states(operator) == ["redriven"]
    failure = DeliveryFailure.objects.get()
    assert LogEntry.objects.get(object_id=str(failure.pk)).get_change_message() == (
        f"Redriven from {ORDERS.dlq_name} to {ORDERS.name}."
    )

    poll_queue("orders")
    order.refresh_from_db()
    assert order.status == Order.Status.RESERVED
    assert states(operator) == ["resolved"]


def test_an_event_that_fails_again_after_a_redrive_is_still_one_row(catalogue, quiet_relay, settings):
    dead_lettered_order(settings)
    operator = staff_client(superuser=True)
    redrive(operator)  # the order is still missing, so it fails again, as a new message
    poll_queue("orders", times=settings.SQS_MAX_RECEIVE_COUNT + 1)
    assert DeliveryFailure.objects.count() == 1
    assert states(operator) == ["failing"]


def test_only_staff_allowed_to_redrive_see_the_button_and_a_forged_post_is_403(catalogue, quiet_relay, settings):
    dead_lettered_order(settings)
    support = staff_client(permissions=("view_deliveryfailure",))
    page = support.get("/admin/eventbus/deliveryfailure/")
    assert page.status_code == 200
    assert "Redrive to orders" not in page.content.decode()
    assert redrive(support).status_code == 403
    assert queue_depth(ORDERS.dlq_name) == 1
