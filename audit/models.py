from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    """Every event shopbus saw, with its EventBridge envelope exactly as delivered. Never changed."""

    event_id = models.UUIDField(unique=True)
    source = models.CharField(max_length=100)
    detail_type = models.CharField(max_length=100, db_index=True)
    correlation_id = models.CharField(max_length=200, db_index=True)  # metadata.correlationId's maxLength
    occurred_at = models.DateTimeField(db_index=True)
    envelope = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at"]

    def __str__(self) -> str:
        return f"{self.detail_type} {self.event_id}"
