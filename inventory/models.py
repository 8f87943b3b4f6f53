from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from eventbus.models import EventedModel
from eventbus.state_machine import GuardedStatus


class Product(models.Model):
    sku = models.CharField("SKU (productId)", max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(0)])
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sku"]
        permissions = [("restock_product", "Can restock products")]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


# The largest count an integer column holds on PostgreSQL. SQLite would store up to 2^63 - 1, but a
# count that only one database accepts would fail on the other; so both refuse past this.
STOCK_COUNT_MAX = 2**31 - 1
# The most staff may bring on hand (opening stock, a restock): well below the column's maximum, so that
# stock sold and then given back (an order cancelled after it was confirmed) always fits in again.
STOCK_ON_HAND_LIMIT = 10**9


def _stock_count(**options) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(validators=[MaxValueValidator(STOCK_COUNT_MAX)], **options)


class StockItem(EventedModel):
    product = models.OneToOneField(Product, on_delete=models.PROTECT, related_name="stock")
    on_hand = _stock_count(default=0)
    reserved = _stock_count(default=0)
    low_stock_threshold = _stock_count(default=10)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product__sku"]
        constraints = [
            models.CheckConstraint(condition=Q(reserved__lte=F("on_hand")), name="stock_reserved_within_on_hand")
        ]

    def __str__(self) -> str:
        return f"stock of {self.product.sku}"

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @property
    def is_low(self) -> bool:
        return self.available <= self.low_stock_threshold


class Reservation(GuardedStatus, EventedModel):
    """Inventory's record of one order: what it holds for it and where that stands."""

    class Status(models.TextChoices):
        RESERVED = "RESERVED", "Reserved"
        COMMITTED = "COMMITTED", "Committed (sold)"
        RELEASED = "RELEASED", "Released"
        RETURNED = "RETURNED", "Returned after commit"
        FAILED = "FAILED", "Failed"
        # The order was cancelled before inventory saw it placed; a late Order Placed reserves nothing.
        VOIDED = "VOIDED", "Voided before placement"

    TRANSITIONS = {
        Status.RESERVED: frozenset({Status.COMMITTED, Status.RELEASED}),
        Status.COMMITTED: frozenset({Status.RETURNED}),
    }

    order_id = models.UUIDField(unique=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    failure_reason_code = models.CharField(max_length=30, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"reservation for {self.order_id}"


class ReservationLine(models.Model):
    # Searched through the unique constraint below, which leads with it (docs/performance.md, item 32).
    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="lines", db_index=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])

    class Meta:
        constraints = [models.UniqueConstraint(fields=["reservation", "product"], name="one_line_per_product")]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"
