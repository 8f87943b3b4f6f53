from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from inventory.models import Product, StockItem
from orders.services import OrderItem, PlaceOrderRequest


class ProductFactory(DjangoModelFactory):
    class Meta:
        model = Product
        django_get_or_create = ("sku",)
        skip_postgeneration_save = True

    sku = factory.Sequence(lambda n: f"sku-{n}")
    name = factory.Sequence(lambda n: f"Product {n}")
    price = Decimal("10.00")
    stock = factory.RelatedFactory("tests.factories.StockItemFactory", factory_related_name="product")


class StockItemFactory(DjangoModelFactory):
    class Meta:
        model = StockItem

    product = factory.SubFactory(ProductFactory, stock=None)
    on_hand = 100
    reserved = 0
    low_stock_threshold = 10


class OrderItemFactory(factory.Factory):
    class Meta:
        model = OrderItem

    product_id = "prod-1"
    quantity = 1


ADDRESS = {"street": "123 Main St", "city": "Seattle", "state": "WA", "zipCode": "98101", "country": "US"}


def order_body(**overrides) -> dict:
    """A POST /api/orders body, as a client sends it."""
    return {
        "customerId": "customer-123",
        "email": "customer@example.com",
        "items": [{"productId": "prod-1", "quantity": 1}],
        "shippingAddress": ADDRESS,
        **overrides,
    }


class PlaceOrderRequestFactory(factory.Factory):
    class Meta:
        model = PlaceOrderRequest

    customer_id = factory.Sequence(lambda n: f"customer-{n}")
    email = factory.LazyAttribute(lambda o: f"{o.customer_id}@example.com")
    items = factory.LazyFunction(lambda: [OrderItemFactory()])
    shipping_address = factory.LazyFunction(lambda: dict(ADDRESS))
    payment_token = "tok_visa"
