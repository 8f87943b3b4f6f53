from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from eventbus.models import OutboxEvent
from orders import services
from orders.models import IdempotencyKey, Order
from tests.factories import ADDRESS
from tests.factories import order_body as api_order_body

pytestmark = pytest.mark.django_db


TWO_LINES = [{"productId": "prod-1", "quantity": 1}, {"productId": "prod-2", "quantity": 2}]


def order_body(**overrides) -> dict:
    return api_order_body(**{"items": TWO_LINES, **overrides})


@pytest.fixture
def client(api_key, catalogue) -> Client:
    return Client(headers={"Authorization": f"Bearer {api_key}"})


def post(client: Client, path: str, body, **headers):
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)


def test_placing_an_order_returns_it_priced_from_the_catalogue(client):
    response = post(client, "/api/orders", order_body())

    assert response.status_code == 201
    order = response.json()
    assert order["status"] == "PLACED"
    assert order["totalAmount"] == "1059.97"  # 999.99 + 2 x 29.99, the exercise's sample order
    assert order["currency"] == "USD"
    assert [(i["productId"], i["name"], i["unitPrice"], i["quantity"]) for i in order["items"]] == [
        ("prod-1", "Laptop", "999.99", 1),
        ("prod-2", "Mouse", "29.99", 2),
    ]
    placed = OutboxEvent.objects.get(detail_type="Order Placed")
    assert placed.detail["data"]["orderId"] == order["orderId"]
    assert placed.detail["data"]["totalAmount"] == "1059.97"


def test_an_order_can_be_read_back(client):
    order_id = post(client, "/api/orders", order_body()).json()["orderId"]
    response = client.get(f"/api/orders/{order_id}")
    assert response.status_code == 200
    assert response.json()["orderId"] == order_id
    assert response.json()["shippingAddress"] == ADDRESS


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (order_body(items=[]), "items", "at least one item"),
        (order_body(items=[{"productId": "prod-1", "quantity": 0}]), "items[0].quantity", "at least 1"),
        (order_body(items=[{"productId": "prod-1", "quantity": "2"}]), "items[0].quantity", "whole number"),
        (order_body(items=[{"productId": "prod-404", "quantity": 1}]), "items[0].productId", "Unknown product"),
        (order_body(shippingAddress={**ADDRESS, "city": ""}), "shippingAddress.city", "required"),
        (
            order_body(shippingAddress={k: v for k, v in ADDRESS.items() if k != "zipCode"}),
            "shippingAddress.zipCode",
            "required",
        ),
        (order_body(email="not-an-email"), "email", "valid email"),
        (order_body(customerId=None), "customerId", "required"),
        (order_body(items=[{"productId": "prod-1", "quantity": 1}] * 2), "items[1].productId", "already in the order"),
    ],
)
def test_invalid_orders_get_400_with_field_errors(client, body, field, message):
    response = post(client, "/api/orders", body)
    assert response.status_code == 400
    assert message in " ".join(response.json()["fields"][field])
    assert not Order.objects.exists()
    assert not OutboxEvent.objects.filter(detail_type="Order Placed").exists()


def test_more_items_than_the_configured_maximum_are_refused(client, settings):
    settings.ORDER_MAX_ITEMS = 2
    items = [{"productId": sku, "quantity": 1} for sku in ("prod-1", "prod-2", "prod-3")]
    response = post(client, "/api/orders", order_body(items=items))
    assert response.status_code == 400
    assert response.json()["fields"]["items"] == ["An order can have at most 2 items."]


def test_a_client_cannot_set_prices_or_the_total(client):
    response = post(
        client,
        "/api/orders",
        order_body(items=[{"productId": "prod-1", "quantity": 1, "unitPrice": "0.01"}], totalAmount="0.01"),
    )
    assert response.status_code == 400
    assert response.json()["fields"]["items[0]"] == ["Prices come from the catalogue and cannot be set."]
    assert "totalAmount" in response.json()["fields"]
    assert not Order.objects.exists()


def test_malformed_json_is_a_400_in_json(client):
    response = client.post("/api/orders", data="{oops", content_type="application/json")
    assert response.status_code == 400
    assert "Not valid JSON" in response.json()["fields"]["body"][0]


def test_an_idempotency_key_makes_a_retry_return_the_same_order(client):
    first = post(client, "/api/orders", order_body(), **{"Idempotency-Key": "checkout-42"})
    retry = post(client, "/api/orders", order_body(), **{"Idempotency-Key": "checkout-42"})

    assert first.status_code == retry.status_code == 201
    assert retry.json()["orderId"] == first.json()["orderId"]
    assert retry["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1
    assert OutboxEvent.objects.filter(detail_type="Order Placed").count() == 1


def test_a_retry_answers_the_order_as_it_stands_now_and_places_no_other(client):
    first = post(client, "/api/orders", order_body(), **{"Idempotency-Key": "checkout-42"})
    post(client, f"/api/orders/{first.json()['orderId']}/cancel", {"reason": "Changed my mind"})

    retry = post(client, "/api/orders", order_body(), **{"Idempotency-Key": "checkout-42"})

    assert (retry.status_code, retry["Idempotent-Replayed"]) == (201, "true")
    assert (retry.json()["orderId"], retry.json()["status"]) == (first.json()["orderId"], "CANCELLED")
    assert Order.objects.count() == 1


def test_an_idempotency_key_reused_for_a_different_order_is_refused(client):
    post(client, "/api/orders", order_body(), **{"Idempotency-Key": "checkout-42"})
    response = post(client, "/api/orders", order_body(customerId="someone-else"), **{"Idempotency-Key": "checkout-42"})
    assert response.status_code == 422
    assert "different request" in response.json()["error"]
    assert Order.objects.count() == 1


def test_idempotency_keys_belong_to_one_client(client, catalogue):
    _, other_key = services.create_api_client(name="other app")
    other = Client(headers={"Authorization": f"Bearer {other_key}"})
    post(client, "/api/orders", order_body(), **{"Idempotency-Key": "k"})
    post(other, "/api/orders", order_body(), **{"Idempotency-Key": "k"})
    assert Order.objects.count() == 2
    assert IdempotencyKey.objects.count() == 2


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer sb_nope_nope", "Basic dXNlcjpwYXNz", "Bearer not-even-our-format"]
)
def test_requests_without_a_valid_key_get_401(catalogue, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = Client(headers=headers).get("/api/products")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="shopbus"'
    assert "API key" in response.json()["error"]


def test_a_revoked_key_is_refused(catalogue):
    client, plaintext = services.create_api_client(name="old")
    services.revoke_api_keys(api_key_ids=[client.keys.get().pk])
    assert Client(headers={"Authorization": f"Bearer {plaintext}"}).get("/api/products").status_code == 401


def test_keys_are_stored_hashed(db):
    client, plaintext = services.create_api_client(name="hashed")
    api_key = client.keys.get()
    assert plaintext.split("_", 2)[2] not in (api_key.hashed_secret, api_key.prefix)
    assert len(api_key.hashed_secret) == 64


def test_unknown_orders_are_404_in_json(client):
    assert client.get(f"/api/orders/{uuid.uuid4()}").status_code == 404
    response = client.get("/api/orders/not-a-uuid")
    assert response.status_code == 404
    assert "No order" in response.json()["error"]


def test_cancelling_an_order(client):
    order_id = post(client, "/api/orders", order_body()).json()["orderId"]

    response = post(client, f"/api/orders/{order_id}/cancel", {"reason": "Changed my mind"})

    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    assert response.json()["cancellation"] == {"reasonCode": "CUSTOMER_REQUEST", "reason": "Changed my mind"}
    cancelled = OutboxEvent.objects.get(detail_type="Order Cancelled")
    assert cancelled.detail["data"]["previousStatus"] == "PLACED"


def test_cancelling_twice_is_a_409(client):
    order_id = post(client, "/api/orders", order_body()).json()["orderId"]
    post(client, f"/api/orders/{order_id}/cancel", {"reason": "Changed my mind"})
    response = post(client, f"/api/orders/{order_id}/cancel", {"reason": "Again"})
    assert response.status_code == 409
    assert response.json()["status"] == "CANCELLED"
    assert OutboxEvent.objects.filter(detail_type="Order Cancelled").count() == 1


def test_a_cancel_needs_a_reason(client):
    order_id = post(client, "/api/orders", order_body()).json()["orderId"]
    response = post(client, f"/api/orders/{order_id}/cancel", {})
    assert response.status_code == 400
    assert "reason" in response.json()["fields"]


def test_the_catalogue_lists_available_stock(client):
    products = {p["productId"]: p for p in client.get("/api/products").json()["products"]}
    assert products["prod-1"] == {"productId": "prod-1", "name": "Laptop", "unitPrice": "999.99", "available": 50}
    assert products["prod-3"]["available"] == 5


def test_wrong_methods_are_405_in_json(client):
    response = client.delete("/api/orders")
    assert response.status_code == 405
    assert set(response["Allow"].split(", ")) == {"GET", "POST"}
    assert "not allowed" in response.json()["error"]


def test_unknown_api_paths_are_404_in_json(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
