from django.db import models
from django.utils import timezone


class Notification(models.Model):
    class Kind(models.TextChoices):
        ORDER_CONFIRMED = "order_confirmed", "Order confirmed"
        ORDER_CANCELLED = "order_cancelled", "Order cancelled"
        ORDER_SHIPPED = "order_shipped", "Order shipped"
        PAYMENT_FAILED = "payment_failed", "Payment failed"
        REFUND_ISSUED = "refund_issued", "Refund issued"
        LOW_STOCK_ALERT = "low_stock_alert", "Low stock alert (staff)"

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SENT = "SENT", "Sent"
        FAILED = "FAILED", "Failed"

    event_id = models.UUIDField()
    kind = models.CharField(max_length=30, choices=Kind.choices)
    channel = models.CharField(max_length=10, default="email")
    recipient = models.EmailField()
    correlation_id = models.CharField(max_length=200, db_index=True)  # metadata.correlationId's maxLength
    context = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # When the stuck-send sweep last queued its send, which then has every retry ahead of it again.
    requeued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["event_id", "kind"], name="one_notification_per_event_and_kind")]
        # The stuck-send sweep's scan (services.requeue_stuck_notifications): pending rows are few.
        indexes = [
            models.Index(
                fields=["created_at"], condition=models.Q(status="PENDING"), name="notification_pending_by_age"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient}"
