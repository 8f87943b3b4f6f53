from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from eventbus.models import EventedModel
from eventbus.state_machine import GuardedStatus


class Payment(GuardedStatus, EventedModel):
    """Payments' record of one order. It charges once it knows the amount (Order Placed) and the stock
    is held (Inventory Reserved), unless the order was cancelled first; the two may arrive in any order.

    CHARGING and REFUNDING are a gateway call recorded and committed but not yet answered: whoever
    finds the payment in one of them calls again with the same idempotency key, so a crash between the
    call and its result never leaves the money undecided, and never charges twice (docs/architecture.md,
    "Payments and the gateway")."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Waiting to charge"
        CHARGING = "CHARGING", "Charge sent to the gateway"
        CHARGED = "CHARGED", "Charged"
        DECLINED = "DECLINED", "Declined"
        REFUNDING = "REFUNDING", "Refund sent to the gateway"
        REFUNDED = "REFUNDED", "Refunded"
        VOIDED = "VOIDED", "Cancelled before charging"

    TRANSITIONS = {
        Status.PENDING: frozenset({Status.CHARGING, Status.VOIDED}),
        Status.CHARGING: frozenset({Status.CHARGED, Status.DECLINED}),
        Status.CHARGED: frozenset({Status.REFUNDING}),
        # Payments gave up on a failing gateway, and then an attempt still in flight came back approved:
        # the provider holds the money of an order that is being cancelled (services._record_answer).
        Status.DECLINED: frozenset({Status.REFUNDING}),
        Status.REFUNDING: frozenset({Status.REFUNDED}),
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
    # Calls made with the charge's (the refund's) idempotency key, counted before each call, so the count
    # survives a crash and every redelivery.
    charge_attempts = models.PositiveSmallIntegerField(default=0)
    refund_attempts = models.PositiveSmallIntegerField(default=0)
    # Charge calls answered with a transient error; PAYMENT_MAX_GATEWAY_ATTEMPTS bounds these, not the
    # attempts: an attempt whose answer was lost (a crash) or is still coming (another worker's) may have
    # charged, and the next call with the same key says so.
    charge_failures = models.PositiveSmallIntegerField(default=0)
    last_gateway_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"payment for {self.order_id}"

    @property
    def charge_key(self) -> str:
        """The charge's idempotency key: the order, so an order is never charged twice."""
        return str(self.order_id)

    @property
    def refund_key(self) -> str:
        return f"refund:{self.order_id}"

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


class SimulatedGatewayRequest(models.Model):
    """The simulated gateway's own ledger: what a provider keeps on its side, one row per idempotency
    key, with the answer it gave. It lives in our database only because the simulator has no other;
    payments' code never reads it, and the simulator writes it in a transaction of its own, so, as at
    a real provider, our rollbacks cannot undo a charge (payments.gateways.SimulatedGateway)."""

    class Operation(models.TextChoices):
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"

    idempotency_key = models.CharField(max_length=255, unique=True)
    operation = models.CharField(max_length=10, choices=Operation.choices)
    # What the key was first used for: the same key with other parameters is refused.
    parameters = models.CharField(max_length=64)
    approved = models.BooleanField()
    reference = models.CharField(max_length=100)
    decline_code = models.CharField(max_length=30, blank=True)
    message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.operation} {self.idempotency_key}"
