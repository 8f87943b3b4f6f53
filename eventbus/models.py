from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models import Q
from django.utils import timezone

from .event_types import EventType


@dataclass(frozen=True)
class RecordedEvent:
    event_type: EventType
    data: dict[str, Any]
    correlation_id: str


class EventedModel(models.Model):
    """A model that records domain events while it changes; its post-save hook writes them to the outbox.

    Services call `record_event()` and then `save()` inside `transaction.atomic()`, so the outbox rows
    commit or roll back with the state change. `QuerySet.update()` and `bulk_create()` send no
    post-save signal and would silently drop the events: services never use them on these models.
    """

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if self.__dict__.get("_recorded_events"):
            using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
            if not transaction.get_connection(using).in_atomic_block:
                # Refused before writing: in autocommit the change would commit without its events.
                raise RuntimeError(
                    f"{type(self).__name__} recorded events outside transaction.atomic(); "
                    "they would not commit with the change"
                )
        super().save(*args, **kwargs)

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update) -> bool:
        """Django's UPDATE of a saved row by its primary key, with the statement's text kept per (model,
        database alias, columns) rather than compiled through a QuerySet on every save: that
        compilation was most of a save's 250–450 µs on the handler path (docs/performance.md, "Saves
        without the query compiler"). Each value goes through its field's `get_db_prep_save`, as in
        Django's UPDATE, and the post-save hook that writes the outbox runs as before: only the SQL
        text is reused. Values only Django's compiler can render (an expression such as F(), a model
        instance, a field with its own placeholder), a key no row can have, a composite key,
        `select_on_save` and a filtering base manager take Django's own path."""
        model = base_qs.model  # the table being saved: a parent's, under multi-table inheritance
        connection = connections[using]
        params = None
        # select_on_save is the saved class's, as in Django; a composite key's WHERE is Django's to build.
        if values and not self._meta.select_on_save and not model._meta.is_composite_pk and not base_qs.query.where:
            params = _plain_parameters(values, model._meta.pk, pk_val, connection)
        if params is None:
            return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
        with connection.cursor() as cursor:
            cursor.execute(_update_by_pk(model, using, tuple(field for field, _, _ in values)), params)
            return cursor.rowcount > 0

    def record_event(self, event_type: EventType, data: dict[str, Any], *, correlation_id: Any) -> None:
        self.__dict__.setdefault("_recorded_events", []).append(
            RecordedEvent(event_type=event_type, data=data, correlation_id=str(correlation_id))
        )

    def pop_recorded_events(self) -> list[RecordedEvent]:
        return self.__dict__.pop("_recorded_events", [])


def _plain_parameters(
    values: list[tuple[models.Field, Any, Any]], pk: models.Field, pk_val: Any, connection
) -> list[Any] | None:
    """The UPDATE's parameters, the key's last, as Django's compiler would send them; or None, before
    any value is prepared, if one needs the compiler to render it or the key cannot match a row."""
    for field, _, value in values:
        if field.generated or hasattr(field, "get_placeholder"):
            return None
        if hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save"):
            return None
    key = pk.get_db_prep_value(pk_val, connection)
    if isinstance(pk, models.IntegerField) and not _in_integer_range(key, pk, connection):
        return None  # Django's lookup matches nothing without asking the database, which would refuse it
    params = [field.get_db_prep_save(value, connection) for field, _, value in values]
    if any(hasattr(param, "as_sql") for param in params):
        return None
    return [*params, key]


def _in_integer_range(value: Any, field: models.IntegerField, connection) -> bool:
    low, high = connection.ops.integer_field_range(field.get_internal_type())
    return (low is None or value >= low) and (high is None or value <= high)


@lru_cache(maxsize=256)
def _update_by_pk(model: type[models.Model], using: str, fields: tuple[models.Field, ...]) -> str:
    quote = connections[using].ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    return f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"


class OutboxEvent(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        PUBLISHED = "PUBLISHED", "Published"
        FAILED = "FAILED", "Failed"

    # The producer's event id: metadata.eventId in the detail, and the consumers' idempotency key.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.CharField(max_length=100)
    detail_type = models.CharField(max_length=100)
    detail = models.JSONField()
    correlation_id = models.CharField(max_length=200, db_index=True)  # metadata.correlationId's maxLength
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A relay that claimed the row holds it until then (renewing it while it publishes); a relay that
    # died mid-publish loses the claim when the lease runs out, or at once when another relay on its
    # host sees its process gone (eventbus.claims).
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    last_error = models.TextField(blank=True)
    event_bridge_id = models.CharField("EventBridge event id", max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbox_due_idx"),
            # Operators find an event by the id EventBridge gave it (a replay, a log line, a DLQ body).
            models.Index(fields=["event_bridge_id"], name="outbox_event_bridge_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.detail_type} {self.id}"


class ProcessedEvent(models.Model):
    """One row per (handler, producer event id): the consumer-side idempotency record."""

    handler = models.CharField(max_length=150)
    event_id = models.UUIDField()
    detail_type = models.CharField(max_length=100)
    envelope_id = models.CharField(max_length=100, blank=True)
    replay_name = models.CharField(max_length=100, blank=True)
    note = models.CharField(max_length=300, blank=True)
    processed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["handler", "event_id"], name="processed_event_once")]
        # An order's timeline looks up who handled each of its events.
        indexes = [models.Index(fields=["event_id"], name="processed_event_id_idx")]

    def __str__(self) -> str:
        return f"{self.handler} {self.event_id}"


class DeliveryFailure(models.Model):
    """Why an event failed on a queue: one row per (queue, event), whichever of its messages failed
    last (a redrive sends a new message), kept with that message's id so `dlq show` can say why it
    is in a DLQ. Whether it is still failing, was redriven, or was since handled is for the reader
    (eventbus.selectors.failure_states); a message that cannot be parsed has no event and keeps a row
    of its own."""

    message_id = models.CharField(max_length=100, unique=True)
    queue_name = models.CharField(max_length=100)
    event_id = models.CharField(max_length=100, blank=True, db_index=True)
    detail_type = models.CharField(max_length=100, blank=True)
    reason = models.TextField()
    receive_count = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField(default=timezone.now)
    last_failed_at = models.DateTimeField(default=timezone.now)
    redriven_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_failed_at"]
        permissions = [("redrive_dead_letters", "Can redrive dead letters to their queue")]
        constraints = [
            models.UniqueConstraint(
                fields=["queue_name", "event_id"], condition=~Q(event_id=""), name="one_failure_row_per_queued_event"
            )
        ]

    def __str__(self) -> str:
        return f"{self.queue_name} {self.message_id}"


class MetricCount(models.Model):
    """One metric's aggregate for one minute and one set of dimensions, summed over every process.
    Written by the metrics flusher (eventbus.metrics), read by the event-flow dashboard."""

    minute = models.DateTimeField()
    metric = models.CharField(max_length=40)
    service = models.CharField(max_length=40, blank=True)
    event_type = models.CharField(max_length=100, blank=True)
    result = models.CharField(max_length=20, blank=True)
    count = models.BigIntegerField(default=0)
    total = models.FloatField(default=0)
    maximum = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "metric", "service", "event_type", "result"], name="one_metric_count_per_minute"
            )
        ]
        indexes = [models.Index(fields=["metric", "minute"], name="metric_count_window_idx")]

    def __str__(self) -> str:
        return f"{self.minute:%H:%M} {self.metric} {self.service} {self.event_type} {self.result}: {self.count}"


class MetricBucket(models.Model):
    """A latency histogram bucket (eventbus.metrics.BUCKET_BOUNDS) for one minute and service, so
    percentiles over any window are a GROUP BY, whatever the volume."""

    minute = models.DateTimeField()
    metric = models.CharField(max_length=40)
    service = models.CharField(max_length=40, blank=True)
    bucket = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["minute", "metric", "service", "bucket"], name="one_bucket_per_minute")
        ]
        indexes = [models.Index(fields=["metric", "minute"], name="metric_bucket_window_idx")]

    def __str__(self) -> str:
        return f"{self.minute:%H:%M} {self.metric} {self.service} bucket {self.bucket}: {self.count}"


class ConsumerHeartbeat(models.Model):
    """When a worker's poller for a service last polled its queue."""

    service = models.CharField(max_length=40)
    worker = models.CharField(max_length=200)
    last_polled_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service", "worker"], name="one_heartbeat_per_poller")]

    def __str__(self) -> str:
        return f"{self.service} on {self.worker}"


class SweepFailure(models.Model):
    """An item a periodic sweep could not handle and skips until it can: the sweep logs it at ERROR
    when this row is created, and quietly after that, while the SweepItemFailed metric counts every
    skip. The row goes when the item succeeds."""

    sweep = models.CharField(max_length=40)
    item = models.CharField(max_length=200)  # the row's id, or for a batch the range of ids it covers
    error = models.TextField()
    failures = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField(default=timezone.now)
    last_failed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_failed_at"]
        constraints = [models.UniqueConstraint(fields=["sweep", "item"], name="one_failure_per_sweep_item")]

    def __str__(self) -> str:
        return f"{self.sweep} {self.item}"
