"""Each API client sees only its own orders; keys rotate under a client; GET /api/orders."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders import services
from orders.models import ApiClient, Order
from tests.factories import OrderItemFactory, PlaceOrderRequestFactory, order_body

pytestmark = pytest.mark.django_db


def api(plaintext: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {plaintext}"})


def place(client: ApiClient, **overrides) -> Order:
    return services.place_order(request=PlaceOrderRequestFactory(**overrides), client=client)


@pytest.fixture
def shop(catalogue):
    return services.create_api_client(name="shop")


@pytest.fixture
def rival(catalogue):
    return services.create_api_client(name="rival")


def test_another_clients_order_is_404_on_read_cancel_and_events(shop, rival):
    (shop_client, _), (_, rival_key) = shop, rival
    order = place(shop_client)
    intruder = api(rival_key)

    assert intruder.get(f"/api/orders/{order.pk}").status_code == 404
    assert intruder.get(f"/api/orders/{order.pk}/events").status_code == 404
    cancel = intruder.post(
        f"/api/orders/{order.pk}/cancel", data=json.dumps({"reason": "mine now"}), content_type="application/json"
    )
    assert cancel.status_code == 404
    assert cancel.json() == {"error": f"No order {order.pk}."}
    order.refresh_from_db()
    assert order.status == Order.Status.PLACED


def test_an_order_placed_through_the_api_belongs_to_the_client_and_it_can_cancel_it(shop):
    shop_client, shop_key = shop
    placed = api(shop_key).post(
        "/api/orders",
        data=json.dumps(
            {
                "customerId": "c-1",
                "email": "c1@example.com",
                "items": [{"productId": "prod-2", "quantity": 1}],
                "shippingAddress": {
                    "street": "1 High St",
                    "city": "Leeds",
                    "state": "WY",
                    "zipCode": "LS1",
                    "country": "GB",
                },
            }
        ),
        content_type="application/json",
    )
    assert Order.objects.get(pk=placed.json()["orderId"]).api_client == shop_client
    cancel = api(shop_key).post(
        f"/api/orders/{placed.json()['orderId']}/cancel",
        data=json.dumps({"reason": "duplicate"}),
        content_type="application/json",
    )
    assert cancel.status_code == 200


def test_a_staff_client_sees_and_cancels_every_order(shop, catalogue):
    order = place(shop[0])
    from_admin = services.place_order(request=PlaceOrderRequestFactory())
    _, staff_key = services.create_api_client(name="support desk", is_staff=True)
    staff = api(staff_key)

    assert staff.get(f"/api/orders/{from_admin.pk}").status_code == 200
    listed = {o["orderId"] for o in staff.get("/api/orders").json()["orders"]}
    assert listed == {str(order.pk), str(from_admin.pk)}
    cancelled = staff.post(
        f"/api/orders/{order.pk}/cancel", data=json.dumps({"reason": "fraud"}), content_type="application/json"
    )
    assert cancelled.json()["status"] == "CANCELLED"


def test_a_rotated_key_keeps_the_clients_orders_and_idempotency_records(shop):
    shop_client, old_key = shop
    body = json.dumps(
        {
            "customerId": "c-1",
            "email": "c1@example.com",
            "items": [{"productId": "prod-2", "quantity": 1}],
            "shippingAddress": {"street": "s", "city": "c", "state": "st", "zipCode": "z", "country": "GB"},
        }
    )
    first = api(old_key).post(
        "/api/orders", data=body, content_type="application/json", headers={"Idempotency-Key": "k"}
    )

    new_api_key, new_key = services.issue_api_key(client=shop_client)
    services.revoke_api_key(prefix=services.authenticate_api_key(presented=old_key).prefix)

    assert api(old_key).get("/api/orders").status_code == 401
    retry = api(new_key).post(
        "/api/orders", data=body, content_type="application/json", headers={"Idempotency-Key": "k"}
    )
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json()["orderId"] == first.json()["orderId"]
    assert api(new_key).get(f"/api/orders/{first.json()['orderId']}").status_code == 200
    assert new_api_key.client == shop_client


def test_the_key_commands_create_a_client_rotate_and_revoke(catalogue, capsys):
    call_command("create_api_key", "--name", "mobile app")
    first = capsys.readouterr().out.strip()
    call_command("create_api_key", "--client", "mobile app")
    second = capsys.readouterr().out.strip()
    call_command("revoke_api_key", first[:11])  # "sb_" and the prefix, as pasted from the key
    assert "Revoked key" in capsys.readouterr().out

    assert services.authenticate_api_key(presented=first) is None
    assert services.authenticate_api_key(presented=second).client.name == "mobile app"
    call_command("create_api_key", "--name", "back office", "--staff")
    assert services.authenticate_api_key(presented=capsys.readouterr().out.strip()).client.is_staff


def test_the_local_stacks_key_survives_a_restart_and_keeps_the_clients_records(catalogue):
    key = services.local_stack_key(client_name="local", remembered=None)
    order = place(services.authenticate_api_key(presented=key).client)

    assert services.local_stack_key(client_name="local", remembered=key) == key
    replaced = services.local_stack_key(client_name="local", remembered="sb_lost_key")
    assert replaced != key
    assert services.authenticate_api_key(presented=key) is None  # its plaintext was lost: revoked
    assert api(replaced).get(f"/api/orders/{order.pk}").status_code == 200


# --- GET /api/orders ---------------------------------------------------------------------------


def test_the_list_shows_the_clients_orders_newest_first_a_page_at_a_time(shop, rival):
    shop_client, shop_key = shop
    base = timezone.now()
    placed = []
    for minutes in range(5):
        order = place(shop_client)
        Order.objects.filter(pk=order.pk).update(created_at=base - timedelta(minutes=minutes))  # test setup only
        placed.append(str(order.pk))
    place(rival[0])

    seen, url, pages = [], "/api/orders?limit=2", 0
    while url:
        response = api(shop_key).get(url)
        assert response.status_code == 200
        seen += [order["orderId"] for order in response.json()["orders"]]
        url, pages = response.json()["next"], pages + 1
    assert seen == placed
    assert pages == 3


def test_the_list_filters_by_customer_status_and_time(shop):
    shop_client, shop_key = shop
    old = place(shop_client, customer_id="alice")
    Order.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))  # test setup only
    recent = place(shop_client, customer_id="alice")
    other = place(shop_client, customer_id="bob")
    services.cancel_order(order_id=other.pk, reason_code="CUSTOMER_REQUEST", reason="x")
    client = api(shop_key)

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/orders?{query}")
        assert response.status_code == 200, response.content
        return [order["orderId"] for order in response.json()["orders"]]

    assert ids("customerId=alice") == [str(recent.pk), str(old.pk)]
    assert ids("status=CANCELLED") == [str(other.pk)]
    yesterday = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert str(old.pk) not in ids(f"placedAfter={yesterday}")
    assert ids(f"placedBefore={yesterday}") == [str(old.pk)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("status=LOST", "status"),
        ("placedAfter=yesterday", "placedAfter"),
        ("placedAfter=2026-11-26T12:00:00", "placedAfter"),  # no time zone
        ("placedBefore=9999-12-31T23:00:00-05:00", "placedBefore"),  # beyond the calendar in UTC
        ("cursor=bm90IGEgY3Vyc29y", "cursor"),
        (
            "cursor=MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDE",
            "cursor",
        ),  # before the calendar in UTC
        (
            "cursor=OTk5OS0xMi0zMVQyMzowMDowMC0wNTowMHwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDE",
            "cursor",
        ),  # beyond it
        ("placedBefore=0.5", "placedBefore"),  # seconds since 1970 is not the contract's date-time
        # Forms Python's fromisoformat takes and the contract's date-time does not:
        ("placedAfter=20261126T120000Z", "placedAfter"),  # ISO 8601's basic form
        ("placedAfter=2026-W48-4T12:00Z", "placedAfter"),  # a week date
        ("placedAfter=2026-11-26T12Z", "placedAfter"),  # an hour alone
        ("stauts=CANCELLED", "stauts"),  # a misspelt filter must not list everything
    ],
)
def test_bad_list_parameters_are_field_errors(shop, query, field):
    response = api(shop[1]).get(f"/api/orders?{query}")
    assert response.status_code == 400
    assert field in response.json()["fields"]


@pytest.mark.parametrize("moment", ["2026-11-26T12:00:00Z", "2026-11-26 12:00:00.5+01:00", "2026-11-26T12:00+05:30"])
def test_the_list_takes_the_contracts_date_times(shop, moment):
    response = api(shop[1]).get("/api/orders", {"placedAfter": moment})

    assert response.status_code == 200, response.content


def test_every_operation_refuses_a_query_parameter_it_does_not_take_before_changing_anything(shop):
    shop_client, shop_key = shop
    order = place(shop_client)
    client = api(shop_key)
    orders_before = Order.objects.count()
    body = order_body()

    answers = [
        client.post("/api/orders?dryRun=true", data=json.dumps(body), content_type="application/json"),
        client.get(f"/api/orders/{order.pk}?fields=status"),
        client.get(f"/api/orders/{order.pk}/events?since=1"),
        client.post(
            f"/api/orders/{order.pk}/cancel?force=true",
            data=json.dumps({"reason": "changed my mind"}),
            content_type="application/json",
        ),
        client.get("/api/products?sku=prod-1"),
    ]

    assert [answer.status_code for answer in answers] == [400] * 5
    assert [list(answer.json()["fields"]) for answer in answers] == [
        ["dryRun"],
        ["fields"],
        ["since"],
        ["force"],
        ["sku"],
    ]
    assert Order.objects.count() == orders_before
    order.refresh_from_db()
    assert order.status == Order.Status.PLACED


def test_a_page_costs_the_same_queries_whatever_its_size(shop):
    shop_client, shop_key = shop
    for _ in range(12):
        place(shop_client, items=[OrderItemFactory(product_id="prod-1"), OrderItemFactory(product_id="prod-2")])
    client = api(shop_key)
    client.get("/api/orders?limit=1")  # the key's last use is written at most once a minute

    def queries(limit: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert len(client.get(f"/api/orders?limit={limit}").json()["orders"]) == limit
        return len(captured)

    assert queries(1) == queries(10)
