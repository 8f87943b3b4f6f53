"""Staff roles and the order's own page: buttons only where legal and permitted, 403 for a forged
POST, History for every staff action, and the place-order form."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.test import Client

from inventory.models import Product
from orders import services
from orders.models import ApiClient, Order
from tests.factories import OrderItemFactory, PlaceOrderRequestFactory
from tests.helpers import restock, staff_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser():
    return staff_client(superuser=True)


@pytest.fixture
def support():
    return staff_client(groups=("Support",))


@pytest.fixture
def warehouse():
    return staff_client(groups=("Warehouse",))


def placed_order() -> Order:
    return services.place_order(request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id="prod-2")]))


def confirmed_order() -> Order:
    order = placed_order()
    services.confirm_paid_order(order_id=order.pk)
    return order


def page(client: Client, order: Order) -> str:
    response = client.get(f"/admin/orders/order/{order.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def history(obj) -> list[str]:
    return [entry.get_change_message() for entry in LogEntry.objects.filter(object_id=str(obj.pk)).order_by("pk")]


def test_the_starter_groups_hold_what_their_names_say():
    support = set(Group.objects.get(name="Support").permissions.values_list("codename", flat=True))
    warehouse = set(Group.objects.get(name="Warehouse").permissions.values_list("codename", flat=True))
    assert {"cancel_order", "view_order", "view_payment", "view_notification", "view_auditevent"} <= support
    assert not {"ship_order", "restock_product", "redrive_dead_letters", "manage_api_keys"} & support
    assert {"ship_order", "restock_product", "view_order", "view_product"} <= warehouse
    assert "cancel_order" not in warehouse


@pytest.mark.parametrize(
    ("make_order", "buttons"),
    [
        (placed_order, {"Cancel order…"}),
        (confirmed_order, {"Cancel order…", "Ship…"}),
    ],
)
def test_an_orders_page_offers_only_the_legal_actions(superuser, catalogue, make_order, buttons):
    content = page(superuser, make_order())
    assert {label for label in ("Cancel order…", "Ship…") if label in content} == buttons


def test_a_cancelled_order_offers_neither(superuser, catalogue):
    order = placed_order()
    services.cancel_order(order_id=order.pk, reason_code="STAFF", reason="x")
    content = page(superuser, order)
    assert "Cancel order…" not in content and "Ship…" not in content


def test_each_role_sees_only_its_own_buttons(support, warehouse, catalogue):
    order = confirmed_order()
    assert "Cancel order…" in page(support, order) and "Ship…" not in page(support, order)
    assert "Ship…" in page(warehouse, order) and "Cancel order…" not in page(warehouse, order)


def test_cancelling_from_the_orders_page_records_who_and_why(support, catalogue):
    order = placed_order()
    form = support.get(f"/admin/orders/order/{order.pk}/cancel/")
    assert b"reason" in form.content
    response = support.post(f"/admin/orders/order/{order.pk}/cancel/", {"reason": "Customer phoned"}, follow=True)
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert order.cancellation_reason_code == "STAFF"
    entry = LogEntry.objects.get(object_id=str(order.pk))
    assert entry.user.username == "Support-user"
    assert "Customer phoned" in entry.get_change_message()
    assert "cancelled" in response.content.decode()


def test_shipping_from_the_orders_page_records_the_carrier(warehouse, catalogue):
    order = confirmed_order()
    warehouse.post(f"/admin/orders/order/{order.pk}/ship/", {"carrier": "DHL", "tracking_number": "JD0001"})
    order.refresh_from_db()
    assert order.status == Order.Status.SHIPPED
    assert history(order) == ["Shipped with DHL, tracking number JD0001."]


def test_shipping_a_cancelled_order_says_why_in_words(superuser, catalogue):
    order = placed_order()
    services.cancel_order(order_id=order.pk, reason_code="STAFF", reason="x")
    response = superuser.get(f"/admin/orders/order/{order.pk}/ship/", follow=True)
    content = response.content.decode()
    assert f"Order {order.pk} is cancelled, so it cannot be shipped. Only a confirmed order ships." in content
    assert "CANCELLED to SHIPPED" not in content
    assert LogEntry.objects.count() == 0


def test_shipping_an_unconfirmed_order_says_what_to_do(superuser, catalogue):
    order = placed_order()
    response = superuser.get(f"/admin/orders/order/{order.pk}/ship/", follow=True)
    assert "It confirms once its payment is taken; try again then." in response.content.decode()


@pytest.mark.parametrize(
    ("role", "path", "data"),
    [
        ("warehouse", "cancel/", {"reason": "forged"}),
        ("support", "ship/", {"carrier": "DHL", "tracking_number": "X"}),
    ],
)
def test_a_forged_object_action_is_403(request, catalogue, role, path, data):
    order = confirmed_order()
    response = request.getfixturevalue(role).post(f"/admin/orders/order/{order.pk}/{path}", data)
    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED


def test_a_forged_list_action_is_403(support, catalogue):
    keyboard = Product.objects.get(sku="prod-3")
    response = restock(support, keyboard, quantity="5", reason="x")
    assert response.status_code == 403
    keyboard.stock.refresh_from_db()
    assert keyboard.stock.on_hand == 5
    actions = support.get("/admin/inventory/product/").content.decode()
    assert 'value="restock"' not in actions


def test_a_restock_is_in_the_products_history_with_its_reason(warehouse, catalogue):
    keyboard = Product.objects.get(sku="prod-3")
    restock(warehouse, keyboard, quantity="20", reason="Delivery note 881")
    assert history(keyboard) == ["Restocked 20 unit(s). Reason given: Delivery note 881"]


def test_a_products_creation_time_is_read_only(superuser, catalogue):
    keyboard = Product.objects.get(sku="prod-3")
    content = superuser.get(f"/admin/inventory/product/{keyboard.pk}/change/").content.decode()
    assert 'name="created_at' not in content


def test_api_keys_need_their_permission_and_leave_history(support, superuser, catalogue):
    client, _ = services.create_api_client(name="mobile app")
    key = client.keys.get()
    assert support.get("/admin/orders/apiclient/add/").status_code == 403
    forged = support.post("/admin/orders/apikey/", {"action": "revoke", ACTION_CHECKBOX_NAME: [str(key.pk)]})
    assert forged.status_code == 403

    superuser.post("/admin/orders/apiclient/", {"action": "issue_key", ACTION_CHECKBOX_NAME: [str(client.pk)]})
    superuser.post("/admin/orders/apikey/", {"action": "revoke", ACTION_CHECKBOX_NAME: [str(key.pk)]})
    newer = client.keys.exclude(pk=key.pk).get()
    assert history(client) == [f"Issued key {newer.prefix}.", f"Revoked key {key.prefix}."]


def test_creating_a_client_in_the_admin_is_in_its_history(superuser):
    superuser.post(
        "/admin/orders/apiclient/add/",
        {"name": "kiosk", "keys-TOTAL_FORMS": "0", "keys-INITIAL_FORMS": "0"},
    )
    client = ApiClient.objects.get(name="kiosk")
    assert history(client) == [f"Created a client; key {client.keys.get().prefix}."]


# --- the place-order form ----------------------------------------------------------------------


def place_form(**overrides) -> dict:
    return {
        "customer_id": "walk-in",
        "email": "walk-in@example.com",
        "street": "1 High St",
        "city": "Leeds",
        "state": "WY",
        "zip_code": "LS1",
        "country": "GB",
        "payment_token": "tok_visa",
        "items-TOTAL_FORMS": "1",
        "items-INITIAL_FORMS": "0",
        "items-MIN_NUM_FORMS": "1",
        "items-MAX_NUM_FORMS": "1000",
        "items-0-product_id": "prod-3",
        "items-0-quantity": "1",
        **overrides,
    }


def test_the_place_order_form_shows_price_and_availability(superuser, catalogue):
    content = superuser.get("/admin/orders/order/add/").content.decode()
    assert "Keyboard (prod-3) · 79.99 · 5 available" in content
    assert 'id="catalogue"' in content and "Add another item" in content


def test_more_units_than_are_available_are_refused_before_placing(superuser, catalogue):
    response = superuser.post("/admin/orders/order/add/", place_form(**{"items-0-quantity": "6"}))
    assert response.status_code == 200
    assert "Only 5 of Keyboard available; lower the quantity or restock it first." in response.content.decode()
    assert not Order.objects.exists()


def test_staff_add_as_many_item_rows_as_they_need(superuser, catalogue):
    rows = {
        "items-TOTAL_FORMS": "5",
        **{f"items-{n}-product_id": f"prod-{n + 1}" for n in range(5)},
        **{f"items-{n}-quantity": "1" for n in range(5)},
    }
    response = superuser.post("/admin/orders/order/add/", place_form(**rows))
    order = Order.objects.get()
    assert response.status_code == 302
    assert order.lines.count() == 5
    assert history(order) == [
        f"Placed from the admin: 1 × prod-1, 1 × prod-2, 1 × prod-3, 1 × prod-4, 1 × prod-5; "
        f"{order.total_amount} {order.currency}."
    ]


def test_errors_speak_the_forms_words(superuser, catalogue):
    response = superuser.post("/admin/orders/order/add/", place_form(zip_code=" "))
    content = response.content.decode()
    assert "shippingAddress" not in content
    assert response.context["form"].errors["zip_code"]
