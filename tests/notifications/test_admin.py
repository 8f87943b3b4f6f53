"""A notification's admin page shows what the customer received."""

from __future__ import annotations

import pytest

from notifications.models import Notification
from orders import services
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
