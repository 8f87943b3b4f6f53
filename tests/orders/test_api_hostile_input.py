"""Hostile input gets a clear JSON error and writes nothing: one test per reproduction in the
production-API issue, and a generated corpus of such bodies."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventbus.models import OutboxEvent
from orders import services
from orders.models import IdempotencyKey, Order, OrderLine
from tests.factories import ADDRESS, ProductFactory, order_body
from tests.helpers import on_both_databases

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(api_key, catalogue) -> Client:
    return Client(headers={"Authorization": f"Bearer {api_key}"})


def post_raw(client: Client, raw: str | bytes, *, path: str = "/api/orders", content_type: str = "application/json"):
    return client.post(path, data=raw, content_type=content_type)


def post(client: Client, body, **kwargs):
    return post_raw(client, json.dumps(body), **kwargs)


def assert_nothing_stored() -> None:
    assert not Order.objects.exists()
    assert not OrderLine.objects.exists()
    assert not OutboxEvent.objects.filter(detail_type="Order Placed").exists()
    assert not IdempotencyKey.objects.exists()


def assert_field_error(response, field: str, words: str = "") -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    messages = response.json()["fields"][field]
    assert words in " ".join(messages)


def test_deeply_nested_json_is_a_400_not_a_recursion_error(client):
    response = post_raw(client, "[" * 100_000 + "]" * 100_000)
    assert_field_error(response, "body", "nested too deeply")
    assert_nothing_stored()


@on_both_databases
def test_a_lone_surrogate_is_a_field_error(client, database_vendor):
    assert connection.vendor == database_vendor
    raw = json.dumps(order_body(customerId="PLACEHOLDER")).replace("PLACEHOLDER", "\\ud800")
    assert_field_error(post_raw(client, raw), "customerId", "lone surrogates")
    assert_nothing_stored()


@on_both_databases
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"customerId": "cust\x00omer"}, "customerId"),
        ({"customerId": "bell\x07"}, "customerId"),
        ({"email": "a\x00b@example.com"}, "email"),
        ({"items": [{"productId": "prod-1\x00", "quantity": 1}]}, "items[0].productId"),
        ({"shippingAddress": {**ADDRESS, "city": "Seat\x00tle"}}, "shippingAddress.city"),
        ({"shippingAddress": {**ADDRESS, "street": "1 Main St\nDROP"}}, "shippingAddress.street"),
        ({"paymentToken": "tok_\x1bvisa"}, "paymentToken"),
    ],
)
def test_control_characters_in_any_string_are_field_errors(client, database_vendor, overrides, field):
    assert connection.vendor == database_vendor
    assert_field_error(post(client, order_body(**overrides)), field, "control characters")
    assert_nothing_stored()


@on_both_databases
def test_a_nul_in_a_cancellation_reason_is_a_field_error(client, database_vendor):
    assert connection.vendor == database_vendor
    order_id = post(client, order_body()).json()["orderId"]
    response = post(client, {"reason": "no\x00thanks"}, path=f"/api/orders/{order_id}/cancel")
    assert_field_error(response, "reason", "control characters")
    assert Order.objects.get(pk=order_id).status == Order.Status.PLACED


def test_the_services_refuse_control_characters_for_the_admin_too(catalogue):
    request = services.PlaceOrderRequest(
        customer_id="c\x00", email="c@example.com", items=[services.OrderItem("prod-1", 1)], shipping_address=ADDRESS
    )
    with pytest.raises(services.OrderValidationError) as refused:
        services.place_order(request=request)
    assert "customerId" in refused.value.errors


def test_a_body_over_the_upload_limit_is_a_413_in_json(client, settings, caplog):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    with caplog.at_level(logging.ERROR):
        response = post(client, order_body(customerId="x" * 20_000))
    assert response.status_code == 413
    assert "larger than 10000 bytes" in response.json()["error"]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert_nothing_stored()


def test_a_trailing_slash_is_a_json_404_not_a_csrf_page(api_key, catalogue):
    client = Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {api_key}"})
    response = post(client, order_body(), path="/api/orders/")
    assert response.status_code == 404
    assert response.json()["error"] == "No API endpoint at /api/orders/."
    assert_nothing_stored()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_declared_json_is_a_415(client, content_type):
    response = post_raw(client, json.dumps(order_body()), content_type=content_type)
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    assert_nothing_stored()


def test_an_empty_payment_token_is_refused_not_replaced(client):
    assert_field_error(post(client, order_body(paymentToken="")), "paymentToken", "cannot be empty")
    assert_nothing_stored()


def test_unknown_fields_are_named(client):
    body = order_body(status="CONFIRMED", items=[{"productId": "prod-1", "quantity": 1, "discount": "100%"}])
    response = post(client, body)
    assert_field_error(response, "status", "Unknown field")
    assert_field_error(response, "items[0].discount", "Unknown field")
    assert_nothing_stored()


def test_errors_stay_bounded_however_many_items_are_wrong(client):
    items = [{"productId": f"nope-{n}", "quantity": "one"} for n in range(40_000)]
    response = post(client, order_body(items=items))
    assert response.status_code == 400
    body = response.json()
    assert len(body["fields"]) <= 20
    assert len(response.content) < 5_000
    assert_nothing_stored()


def test_unknown_products_are_each_named_but_the_list_is_bounded(client, settings):
    settings.ORDER_MAX_ITEMS = 50
    items = [{"productId": f"nope-{n}", "quantity": 1} for n in range(50)]
    body = post(client, order_body(items=items)).json()
    assert len(body["fields"]) == 20
    assert body["fieldsOmitted"] == 30


def test_a_huge_value_is_not_echoed_back(client):
    response = post(client, order_body(items=[{"productId": "p" * 1_000_000, "quantity": 1}]))
    assert response.status_code == 400
    assert len(response.content) < 1_000
    huge_key = order_body(**{"k" * 100_000: 1})
    response = post(client, huge_key)
    assert response.status_code == 400
    assert len(response.content) < 1_000
    assert_nothing_stored()


@on_both_databases
def test_an_order_over_the_money_column_is_refused_before_anything_is_written(client, database_vendor):
    assert connection.vendor == database_vendor
    ProductFactory(sku="yacht", price=Decimal("99999999.99"))
    response = post(client, order_body(items=[{"productId": "yacht", "quantity": 101}]))
    assert_field_error(response, "items", "split it into several orders")
    assert_nothing_stored()
    # The largest total that fits is still taken.
    ProductFactory(sku="boat", price=Decimal("99999999.99"))
    fits = post(client, order_body(items=[{"productId": "boat", "quantity": 100}]))
    assert fits.status_code == 201
    assert Order.objects.get().total_amount == Decimal("9999999999.00")


# --- a generated corpus ------------------------------------------------------------------------

HOSTILE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", " ", "\x00", "\ud800", "\u202e", "x" * 300, "1e400", "NaN", "prod-1", "tok_visa"]),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
PATHS = [
    ("customerId",),
    ("email",),
    ("paymentToken",),
    ("items",),
    ("items", 0),
    ("items", 0, "productId"),
    ("items", 0, "quantity"),
    ("shippingAddress",),
    ("shippingAddress", "zipCode"),
    ("totalAmount",),
    ("status",),
]


def _mutated(body: dict, path: tuple, value) -> dict:
    mutated = json.loads(json.dumps(body))
    target = mutated
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return mutated


@on_both_databases
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(st.tuples(st.sampled_from(PATHS), HOSTILE_VALUES), min_size=1, max_size=3))
def test_no_refused_request_stores_anything(client, database_vendor, mutations):
    assert connection.vendor == database_vendor
    body = order_body()
    for path, value in mutations:
        try:
            body = _mutated(body, path, value)
        except (TypeError, KeyError, IndexError):
            continue  # an earlier mutation removed the parent
    before = (Order.objects.count(), OutboxEvent.objects.count(), IdempotencyKey.objects.count())
    response = client.post(
        "/api/orders", data=json.dumps(body), content_type="application/json", headers={"Idempotency-Key": "corpus"}
    )
    assert response.status_code in (201, 400, 422), response.content
    assert response["Content-Type"].startswith("application/json")
    if response.status_code != 201:
        assert (Order.objects.count(), OutboxEvent.objects.count(), IdempotencyKey.objects.count()) == before
    IdempotencyKey.objects.all().delete()
