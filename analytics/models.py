from django.db import models


class HourlyEventCount(models.Model):
    hour = models.DateTimeField()
    detail_type = models.CharField(max_length=100)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-hour", "detail_type"]
        constraints = [models.UniqueConstraint(fields=["hour", "detail_type"], name="one_count_per_hour_and_type")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00 {self.detail_type} {self.count}"


class OrderTimeline(models.Model):
    """When each saga stage happened for one order (producers' occurredAt), for stage latencies."""

    order_id = models.UUIDField(unique=True)
    placed_at = models.DateTimeField(null=True, blank=True)
    reserved_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason_code = models.CharField(max_length=30, blank=True)
    total_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    refunded_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)

    class Meta:
        ordering = ["-placed_at"]

    def __str__(self) -> str:
        return f"timeline of {self.order_id}"
