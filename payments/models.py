from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from eventbus.models import EventedModel
from eventbus.state_machine import GuardedStatus


class Payment(GuardedStatus, EventedModel):
    """Payments' record of one order. It charges once it knows the amount (Order Placed) and the stock
    is held (Inventory Reserved), unless the order was cancelled first; the two may arrive in any order."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Waiting to charge"
        CHARGED = "CHARGED", "Charged"
        DECLINED = "DECLINED", "Declined"
        REFUNDED = "REFUNDED", "Refunded"
        VOIDED = "VOIDED", "Cancelled before charging"

    TRANSITIONS = {
        Status.PENDING: frozenset({Status.CHARGED, Status.DECLINED, Status.VOIDED}),
        Status.CHARGED: frozenset({Status.REFUNDED}),
    }

    id = models.UUIDField("paymentId", primary_key=True, default=uuid.uuid4, editable=False)
    order_id = models.UUIDField(unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    payment_token = models.CharField(max_length=100, blank=True)
    customer_email = models.EmailField(blank=True)
    stock_reserved = models.BooleanField(default=False)
    order_cancelled = models.BooleanField(default=False)
    gateway_reference = models.CharField(max_length=100, blank=True)
    failure_code = models.CharField(max_length=30, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    charged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"payment for {self.order_id}"

    @property
    def ready_to_charge(self) -> bool:
        return (
            self.status == self.Status.PENDING
            and self.amount is not None
            and self.stock_reserved
            and not self.order_cancelled
        )


class Refund(models.Model):
    id = models.UUIDField("refundId", primary_key=True, default=uuid.uuid4, editable=False)
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, related_name="refund")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    gateway_reference = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"refund of {self.amount} for {self.payment.order_id}"
