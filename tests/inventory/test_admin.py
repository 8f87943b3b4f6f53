"""Stock counts typed into the admin beyond what the column holds are form errors, not a 500.

SQLite stores 64-bit integers and raises OverflowError past 2^63; PostgreSQL's integer column stops
at 2^31 - 1 ("integer out of range"). The admin refuses both the same way on either database."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db.models import F
from django.db.models.signals import post_init

from eventbus.models import OutboxEvent
from inventory.models import STOCK_COUNT_MAX, STOCK_ON_HAND_LIMIT, Product, StockItem
from tests.factories import ProductFactory
from tests.helpers import change_threshold, restock

pytestmark = pytest.mark.django_db

TOO_BIG = [2**31, 2**63]
MAX_ERROR = f"Ensure this value is less than or equal to {STOCK_COUNT_MAX}."
# What staff bring on hand stops well below the column, which keeps room for stock given back.
ON_HAND_ERROR = f"Ensure this value is less than or equal to {STOCK_ON_HAND_LIMIT}."


@pytest.fixture
def staff_client(client, on_each_database):
    # Each test runs on both databases: PostgreSQL's column limit is real.
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(user)
    return client


def add_product(client, **fields):
    data = {
        "sku": "big-1",
        "name": "Big",
        "price": "1.00",
        "active": "on",
        "opening_stock": 0,
        "low_stock_threshold": 10,
    }
    return client.post("/admin/inventory/product/add/", {**data, **fields})


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [("opening_stock", value, ON_HAND_ERROR) for value in [STOCK_ON_HAND_LIMIT + 1, *TOO_BIG]]
    + [("low_stock_threshold", value, MAX_ERROR) for value in TOO_BIG],
)
def test_adding_a_product_with_a_count_past_its_limit_is_a_form_error(staff_client, field, value, error):
    response = add_product(staff_client, **{field: value})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {field: [error]}
    assert not Product.objects.exists()


def test_adding_a_product_with_the_largest_counts_works(staff_client):
    response = add_product(staff_client, opening_stock=STOCK_ON_HAND_LIMIT, low_stock_threshold=STOCK_COUNT_MAX)

    assert response.status_code == 302
    stock = StockItem.objects.get(product__sku="big-1")
    assert (stock.on_hand, stock.low_stock_threshold) == (STOCK_ON_HAND_LIMIT, STOCK_COUNT_MAX)


@pytest.mark.parametrize("value", TOO_BIG)
def test_changing_the_low_stock_threshold_past_the_column_is_a_form_error(staff_client, value):
    product = ProductFactory(sku="big-1")

    response = change_threshold(staff_client, product, value)

    assert response.status_code == 200
    assert response.context["inline_admin_formsets"][0].formset.errors == [{"low_stock_threshold": [MAX_ERROR]}]
    assert StockItem.objects.get(pk=product.stock.pk).low_stock_threshold == 10


@pytest.mark.parametrize("value", [STOCK_ON_HAND_LIMIT + 1, *TOO_BIG])
def test_restocking_past_the_on_hand_limit_is_a_form_error(staff_client, value):
    product = ProductFactory(sku="big-1")

    response = restock(staff_client, product, quantity=value)

    assert response.status_code == 200
    assert response.context["form"].errors == {"quantity": [ON_HAND_ERROR]}
    assert StockItem.objects.get(pk=product.stock.pk).on_hand == 100


def test_a_restock_that_would_push_stock_past_the_on_hand_limit_is_refused_whole(staff_client):
    fits, overflows = ProductFactory(sku="fits"), ProductFactory(sku="full", stock__on_hand=STOCK_ON_HAND_LIMIT - 5)
    OutboxEvent.objects.all().delete()

    response = restock(staff_client, Product.objects.get(pk=fits.pk), quantity=6)
    assert response.status_code == 302
    response = restock(staff_client, fits, overflows, quantity=6)

    assert response.status_code == 200
    [error] = response.context["form"].errors["quantity"]
    assert "full" in error and str(STOCK_ON_HAND_LIMIT) in error
    # Nothing of the refused restock happened: only the first, single-product restock is recorded.
    assert StockItem.objects.get(product=fits).on_hand == 106
    assert StockItem.objects.get(product=overflows).on_hand == STOCK_ON_HAND_LIMIT - 5
    assert OutboxEvent.objects.count() == 1


def test_a_restock_up_to_the_on_hand_limit_works(staff_client):
    product = ProductFactory(sku="full", stock__on_hand=STOCK_ON_HAND_LIMIT - 5)

    assert restock(staff_client, product, quantity=5).status_code == 302
    assert StockItem.objects.get(pk=product.stock.pk).on_hand == STOCK_ON_HAND_LIMIT


def test_changing_the_threshold_never_writes_back_counts_a_consumer_changed_meanwhile(staff_client):
    # A reservation commits after the change form's stock row was read and before it is saved.
    product = ProductFactory(sku="busy-1")
    reserved_meanwhile = []

    def reserve_once(sender, instance, **kwargs):
        if not reserved_meanwhile and instance.pk == product.stock.pk:
            reserved_meanwhile.append(instance.pk)
            StockItem.objects.filter(pk=instance.pk).update(reserved=F("reserved") + 3)

    post_init.connect(reserve_once, sender=StockItem)
    try:
        response = change_threshold(staff_client, product, 4)
    finally:
        post_init.disconnect(reserve_once, sender=StockItem)

    assert response.status_code == 302
    assert reserved_meanwhile
    stock = StockItem.objects.get(pk=product.stock.pk)
    assert (stock.low_stock_threshold, stock.reserved) == (4, 3)
