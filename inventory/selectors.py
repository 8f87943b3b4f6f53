"""Inventory reads. `catalogue_entries` is inventory's public query interface: the orders service prices
order lines through it (in a split deployment, a GET of the catalogue endpoint) and never reads
inventory's tables itself."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet

from .models import Product


@dataclass(frozen=True)
class CatalogueEntry:
    product_id: str
    name: str
    unit_price: Decimal
    available: int


def _with_stock() -> QuerySet[Product]:
    return Product.objects.filter(active=True).select_related("stock").order_by("sku")


def _entry(product: Product) -> CatalogueEntry:
    stock = getattr(product, "stock", None)
    return CatalogueEntry(
        product_id=product.sku,
        name=product.name,
        unit_price=product.price,
        available=stock.available if stock else 0,
    )


def catalogue_entries(*, product_ids: list[str] | None = None) -> dict[str, CatalogueEntry]:
    products = _with_stock()
    if product_ids is not None:
        products = products.filter(sku__in=product_ids)
    return {product.sku: _entry(product) for product in products}
