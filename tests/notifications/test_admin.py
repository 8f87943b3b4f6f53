"""A notification's admin page shows what the customer received."""

from __future__ import annotations

import uuid

import pytest

from eventbus import event_types
from eventbus.consuming import handle_message
from notifications.models import Notification
from orders import services
from tests.events import envelope
from tests.factories import OrderItemFactory, PlaceOrderRequestFactory
from tests.flow import run_until_quiet

pytestmark = pytest.mark.django_db


def test_a_notifications_page_shows_the_subject_and_body_sent(admin_client, catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id="prod-2")]))
    run_until_quiet()
    confirmation = Notification.objects.get(kind=Notification.Kind.ORDER_CONFIRMED)

    content = admin_client.get(f"/admin/notifications/notification/{confirmation.pk}/change/").content.decode()

    assert "Your order is confirmed" in content
    assert f"Your order {order.pk} is confirmed and paid: 29.99 USD." in content


def test_admin_times_show_seconds_and_the_time_zone(admin_client, catalogue):
    services.place_order(request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id="prod-2")]))
    run_until_quiet()
    content = admin_client.get("/admin/notifications/notification/").content.decode()
    created_at = Notification.objects.get().created_at
    assert created_at.strftime("%Y-%m-%d %H:%M:%S UTC") in content


def test_the_body_shown_is_escaped_though_the_text_email_is_not(admin_client, django_capture_on_commit_callbacks):
    note = "<script>alert(1)</script> & co"
    data = {"orderId": str(uuid.uuid4()), "customerId": "c-1", "email": "c@example.com"}
    with django_capture_on_commit_callbacks(execute=True):
        handle_message(
            service="notifications",
            body=envelope(
                event_types.ORDER_CANCELLED, {**data, "reasonCode": "STAFF", "reason": note, "previousStatus": "PLACED"}
            ),
        )
    notification = Notification.objects.get()

    content = admin_client.get(f"/admin/notifications/notification/{notification.pk}/change/").content.decode()

    assert "<script>alert(1)</script>" not in content
    assert "Our note: &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in content
