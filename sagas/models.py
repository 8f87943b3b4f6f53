from django.db import models
from django.utils import timezone


class SagaReply(models.Model):
    """A service's answer to one command of the order-saga state machine: the reply outbox.

    Written in the same transaction as the step's work, and sent (SendTaskSuccess or
    SendTaskFailure) only after that commits. A worker that dies in between leaves the row PENDING,
    and the next sweep sends it, so the state machine always hears the answer."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SENT = "SENT", "Sent"
        DROPPED = "DROPPED", "Dropped (the execution no longer waits for it)"

    task_token = models.TextField(unique=True)
    order_id = models.UUIDField(db_index=True)
    command = models.CharField(max_length=40)
    succeeded = models.BooleanField()
    output = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=100, blank=True)
    cause = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "saga replies"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="saga_reply_due_idx")]

    def __str__(self) -> str:
        outcome = "success" if self.succeeded else f"failure {self.error}"
        return f"{self.command} for {self.order_id}: {outcome}"
