from __future__ import annotations

import uuid

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone

from eventbus.event_types import CancellationReason
from eventbus.models import EventedModel
from eventbus.state_machine import GuardedStatus


class Order(GuardedStatus, EventedModel):
    class Status(models.TextChoices):
        PLACED = "PLACED", "Placed"
        RESERVED = "RESERVED", "Stock reserved"
        CONFIRMED = "CONFIRMED", "Confirmed"
        SHIPPED = "SHIPPED", "Shipped"
        CANCELLED = "CANCELLED", "Cancelled"

    class CancellationReason(models.TextChoices):
        # The codes are Order Cancelled's reasonCode; the labels are for staff.
        CUSTOMER_REQUEST = CancellationReason.CUSTOMER_REQUEST, "Customer request"
        STAFF = CancellationReason.STAFF, "Cancelled by staff"
        OUT_OF_STOCK = CancellationReason.OUT_OF_STOCK, "Out of stock"
        PAYMENT_FAILED = CancellationReason.PAYMENT_FAILED, "Payment failed"
        TIMEOUT = CancellationReason.TIMEOUT, "Timed out"

    # The order saga (docs/architecture.md, "The saga"). Every status change goes through transition_to().
    TRANSITIONS = {
        Status.PLACED: frozenset({Status.RESERVED, Status.CANCELLED}),
        Status.RESERVED: frozenset({Status.CONFIRMED, Status.CANCELLED}),
        Status.CONFIRMED: frozenset({Status.SHIPPED, Status.CANCELLED}),
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer_id = models.CharField(max_length=200, db_index=True)
    email = models.EmailField()
    # Indexed by order_status_age_idx, whose first column it is: an index of its own would be one more
    # entry to move on every transition.
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PLACED)
    total_amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    shipping_street = models.CharField(max_length=200)
    shipping_city = models.CharField(max_length=200)
    shipping_state = models.CharField(max_length=200)
    shipping_zip_code = models.CharField(max_length=200)
    shipping_country = models.CharField(max_length=200)
    payment_token = models.CharField(max_length=100, default="tok_visa")
    cancellation_reason_code = models.CharField(max_length=20, choices=CancellationReason.choices, blank=True)
    cancellation_reason = models.CharField(max_length=500, blank=True)
    carrier = models.CharField(max_length=100, blank=True)
    tracking_number = models.CharField(max_length=100, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    # The API client that placed the order, which alone (with staff clients) may read or cancel it
    # through the API. Orders placed from the admin have none.
    api_client = models.ForeignKey(
        "ApiClient",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
        verbose_name="API client",
        db_index=False,  # order_client_recent_idx leads with it
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("cancel_order", "Can cancel orders"), ("ship_order", "Can ship orders")]
        indexes = [
            models.Index(fields=["status", "status_changed_at"], name="order_status_age_idx"),
            # Staff find a customer's orders by email, whatever its case (the admin's email__iexact).
            models.Index(Upper("email"), name="order_email_upper_idx"),
            # GET /api/orders: one client's orders, newest first, by keyset.
            models.Index(fields=["api_client", "-created_at", "-id"], name="order_client_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"order {self.id}"

    def transition_to(self, target: str) -> str:
        previous = super().transition_to(target)
        self.status_changed_at = timezone.now()
        return previous

    @property
    def shipping_address(self) -> dict[str, str]:
        return {
            "street": self.shipping_street,
            "city": self.shipping_city,
            "state": self.shipping_state,
            "zipCode": self.shipping_zip_code,
            "country": self.shipping_country,
        }


class OrderLine(models.Model):
    """A snapshot of the product as it was priced when the order was placed."""

    # The unique constraint below leads with the order and serves every look-up by it; an index of its
    # own would only be one more entry to write for every line (docs/performance.md, item 32).
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines", db_index=False)
    product_id = models.CharField(max_length=64)
    product_name = models.CharField(max_length=200)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["order", "product_id"], name="one_line_per_product_per_order")]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"

    @property
    def line_total(self):
        return self.unit_price * self.quantity


class ApiClient(models.Model):
    """A client application. Orders and idempotency records belong to the client, not to one of its
    keys, so rotating a key keeps them."""

    name = models.CharField(max_length=100, unique=True)
    is_staff = models.BooleanField(
        "staff", default=False, help_text="A staff client sees and cancels every client's orders."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "API client"
        ordering = ["name"]
        permissions = [("manage_api_keys", "Can create API clients, issue and revoke their keys")]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """One of a client's keys. Only a SHA-256 of the secret is stored; keys are random, so a slow hash
    would add nothing but latency."""

    client = models.ForeignKey(ApiClient, on_delete=models.PROTECT, related_name="keys")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_secret = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… of {self.client}"


class IdempotencyKey(models.Model):
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    order = models.ForeignKey(Order, on_delete=models.CASCADE)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_once_per_client")]

    def __str__(self) -> str:
        return f"Idempotency-Key {self.key} of {self.client_id}"
