from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from eventbus.models import OutboxEvent
from orders import services
from orders.models import ApiClient, Order
from tests.factories import OrderItemFactory, PlaceOrderRequestFactory, ProductFactory
from tests.helpers import restock

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(user)
    return client


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def place_orders(count: int) -> None:
    for _ in range(count):
        services.place_order(request=PlaceOrderRequestFactory())


@pytest.mark.parametrize(
    "url",
    [
        "/admin/orders/order/",
        "/admin/inventory/product/",
        "/admin/eventbus/outboxevent/",
        "/admin/inventory/reservation/",
        "/admin/orders/apikey/",
        "/admin/orders/apiclient/",
    ],
)
def test_list_pages_do_a_fixed_number_of_queries_whatever_the_rows(staff_client, catalogue, url):
    place_orders(1)
    few = queries_for(staff_client, url)
    place_orders(15)
    for n in range(15):
        ProductFactory(sku=f"extra-{n}")
    services.create_api_client(name="a")
    services.issue_api_key(client=services.create_api_client(name="b")[0])
    assert queries_for(staff_client, url) == few


def test_order_detail_page_renders_lines_read_only(staff_client, catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    response = staff_client.get(f"/admin/orders/order/{order.pk}/change/")
    assert response.status_code == 200
    assert b"Laptop" in response.content
    assert b'name="total_amount"' not in response.content  # money is never an input


def test_orders_are_searchable_by_id_customer_and_email(staff_client, catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory(customer_id="findme-7", email="x@findme.example"))
    services.place_order(request=PlaceOrderRequestFactory())
    for term in (str(order.pk), "findme-7", "x@findme.example", "X@FindMe.Example", f"  {order.pk} "):
        response = staff_client.get("/admin/orders/order/", {"q": term})
        assert list(response.context["cl"].result_list) == [order], term
    # Identifiers match whole, never in part: a fragment finds nothing rather than scanning every row.
    for term in (str(order.pk)[:8], "findme", "findme.example", "not-an-id"):
        response = staff_client.get("/admin/orders/order/", {"q": term})
        assert response.status_code == 200
        assert list(response.context["cl"].result_list) == [], term


def test_the_outbox_is_searchable_by_event_id_correlation_id_and_eventbridge_id(staff_client, catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    event = OutboxEvent.objects.get(correlation_id=str(order.pk))
    event.event_bridge_id = "eb-1234"
    event.save()
    services.place_order(request=PlaceOrderRequestFactory())
    for term in (str(event.pk), str(order.pk), "eb-1234"):
        response = staff_client.get("/admin/eventbus/outboxevent/", {"q": term})
        assert list(response.context["cl"].result_list) == [event], term


def test_the_outbox_filters_by_detail_type_without_reading_the_table_for_choices(staff_client, catalogue):
    services.place_order(request=PlaceOrderRequestFactory())
    response = staff_client.get("/admin/eventbus/outboxevent/", {"detail_type": "Order Placed"})
    assert [event.detail_type for event in response.context["cl"].result_list] == ["Order Placed"]
    # Every detail-type shopbus knows is offered, whether or not the table holds one yet.
    assert b"?detail_type=Payment+Refunded" in response.content
    assert b"?detail_type=Reserve+Stock" not in response.content  # a saga command is never in the outbox
    with CaptureQueriesContext(connection) as captured:
        staff_client.get("/admin/eventbus/outboxevent/")
    assert not [query["sql"] for query in captured if "DISTINCT" in query["sql"].upper()]


def test_staff_place_an_order_through_the_admin(staff_client, catalogue):
    form = {
        "customer_id": "walk-in-1",
        "email": "walkin@example.com",
        "street": "1 Pike St",
        "city": "Seattle",
        "state": "WA",
        "zip_code": "98101",
        "country": "US",
        "payment_token": "tok_visa",
        "items-TOTAL_FORMS": "3",
        "items-INITIAL_FORMS": "0",
        "items-MIN_NUM_FORMS": "1",
        "items-MAX_NUM_FORMS": "1000",
        "items-0-product_id": "prod-2",
        "items-0-quantity": "3",
        "items-1-product_id": "",
        "items-1-quantity": "1",
        "items-2-product_id": "",
        "items-2-quantity": "1",
    }
    response = staff_client.post("/admin/orders/order/add/", form)

    order = Order.objects.get(customer_id="walk-in-1")
    assert response.status_code == 302
    assert str(order.total_amount) == "89.97"
    assert OutboxEvent.objects.filter(detail_type="Order Placed", correlation_id=str(order.pk)).exists()


def test_the_admin_shows_service_validation_errors(staff_client, catalogue):
    form = {
        "customer_id": "walk-in-1",
        "email": "walkin@example.com",
        "street": "1 Pike St",
        "city": "Seattle",
        "state": "WA",
        "zip_code": "98101",
        "country": "US",
        "payment_token": "tok_visa",
        "items-TOTAL_FORMS": "2",
        "items-INITIAL_FORMS": "0",
        "items-MIN_NUM_FORMS": "1",
        "items-MAX_NUM_FORMS": "1000",
        "items-0-product_id": "prod-2",
        "items-0-quantity": "1",
        "items-1-product_id": "prod-2",
        "items-1-quantity": "1",
    }
    response = staff_client.post("/admin/orders/order/add/", form)
    assert response.status_code == 200
    assert b"already in the order" in response.content
    assert not Order.objects.exists()


def test_the_cancel_action_asks_for_a_reason_then_cancels(staff_client, catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    selection = {"action": "cancel_orders", ACTION_CHECKBOX_NAME: [str(order.pk)]}

    asked = staff_client.post("/admin/orders/order/", selection)
    assert asked.status_code == 200 and b"reason" in asked.content
    order.refresh_from_db()
    assert order.status == Order.Status.PLACED

    staff_client.post("/admin/orders/order/", {**selection, "apply": "1", "reason": "Duplicate order"})
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert (order.cancellation_reason_code, order.cancellation_reason) == ("STAFF", "Duplicate order")


def test_the_cancel_action_reports_orders_it_cannot_cancel(staff_client, catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id="prod-2")]))
    services.cancel_order(order_id=order.pk, reason_code="STAFF", reason="first")
    response = staff_client.post(
        "/admin/orders/order/",
        {"action": "cancel_orders", ACTION_CHECKBOX_NAME: [str(order.pk)], "apply": "1", "reason": "again"},
        follow=True,
    )
    assert f"Order {order.pk} is already cancelled; there is nothing left to cancel.".encode() in response.content
    assert OutboxEvent.objects.filter(detail_type="Order Cancelled").count() == 1


def test_the_restock_action_publishes_stock_updated(staff_client, catalogue):
    from inventory.models import Product

    keyboard = Product.objects.get(sku="prod-3")
    restock(staff_client, keyboard, quantity="20")
    keyboard.stock.refresh_from_db()
    assert keyboard.stock.on_hand == 25
    event = OutboxEvent.objects.filter(detail_type="Stock Updated", correlation_id="prod-3").latest("created_at")
    assert event.detail["data"] == {
        "productId": "prod-3",
        "onHand": 25,
        "reserved": 0,
        "available": 25,
        "change": 20,
        "reasonCode": "RESTOCK",
    }


def _key_in_message(response, client_name: str) -> str:
    message = [str(m) for m in response.context["messages"]][0]
    return message.split(f"New key for {client_name}: ")[1].split(" ")[0]


def test_an_api_client_created_in_the_admin_gets_a_key_shown_once(staff_client):
    response = staff_client.post(
        "/admin/orders/apiclient/add/",
        {"name": "mobile app", "keys-TOTAL_FORMS": "0", "keys-INITIAL_FORMS": "0"},
        follow=True,
    )
    key = _key_in_message(response, "mobile app")
    assert services.authenticate_api_key(presented=key).client.name == "mobile app"
    client = ApiClient.objects.get(name="mobile app")
    page = staff_client.get(f"/admin/orders/apiclient/{client.pk}/change/").content.decode()
    assert client.keys.get().prefix in page
    assert key.split("_", 2)[2] not in page


def test_staff_rotate_a_clients_key_in_the_admin(staff_client):
    client, old_key = services.create_api_client(name="mobile app")
    selection = {"action": "issue_key", ACTION_CHECKBOX_NAME: [str(client.pk)]}
    new_key = _key_in_message(staff_client.post("/admin/orders/apiclient/", selection, follow=True), "mobile app")
    old = services.authenticate_api_key(presented=old_key)
    revoke = {"action": "revoke", ACTION_CHECKBOX_NAME: [str(old.pk)]}
    staff_client.post("/admin/orders/apikey/", revoke, follow=True)
    assert services.authenticate_api_key(presented=old_key) is None
    assert services.authenticate_api_key(presented=new_key).client == client
    listing = staff_client.get("/admin/orders/apikey/").content.decode()
    assert old.prefix in listing and "mobile app" in listing
    assert old.hashed_secret not in listing


def test_staff_mark_a_confirmed_order_shipped(staff_client, catalogue):
    order = services.place_order(request=PlaceOrderRequestFactory())
    services.confirm_paid_order(order_id=order.pk)
    selection = {"action": "mark_shipped", ACTION_CHECKBOX_NAME: [str(order.pk)]}
    asked = staff_client.post("/admin/orders/order/", selection)
    assert b"tracking_number" in asked.content

    staff_client.post("/admin/orders/order/", {**selection, "apply": "1", "carrier": "UPS", "tracking_number": "1Z999"})

    order.refresh_from_db()
    assert (order.status, order.carrier, order.tracking_number) == (Order.Status.SHIPPED, "UPS", "1Z999")
