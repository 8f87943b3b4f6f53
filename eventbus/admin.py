from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib import admin
from django.utils.html import format_html

from shopbus_site.admin import IdentifierSearch, ReadOnlyAdmin, known_values_filter

from . import aws, event_types, outbox, registry, selectors, topology
from .models import DeliveryFailure, OutboxEvent, ProcessedEvent, SweepFailure

# The outbox holds shopbus's domain events; Step Functions publishes the saga's commands itself, and
# handlers process both.
EVENT_TYPE_FILTER = known_values_filter(
    "detail_type", "detail-type", lambda: (t.detail_type for t in event_types.ALL_EVENT_TYPES)
)
HANDLED_TYPE_FILTER = known_values_filter(
    "detail_type",
    "detail-type",
    lambda: (t.detail_type for t in (*event_types.ALL_EVENT_TYPES, *event_types.SAGA_COMMANDS)),
)


@admin.register(OutboxEvent)
class OutboxEventAdmin(IdentifierSearch, ReadOnlyAdmin):
    list_display = ("created_at", "detail_type", "correlation_id", "status", "attempts", "short_error", "published_at")
    list_filter = (
        "status",
        known_values_filter("source", "source", lambda: (t.source for t in event_types.ALL_EVENT_TYPES)),
        EVENT_TYPE_FILTER,
        ("created_at", admin.DateFieldListFilter),
    )
    uuid_search_fields = ("id",)
    text_search_fields = ("correlation_id", "event_bridge_id")
    show_full_result_count = False
    actions = ["requeue"]
    fields = (
        "id",
        "source",
        "detail_type",
        "correlation_id",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "event_bridge_id",
        "created_at",
        "published_at",
        "pretty_detail",
    )
    readonly_fields = fields

    @admin.display(description="Last error")
    def short_error(self, event: OutboxEvent) -> str:
        return event.last_error[:80]

    @admin.display(description="Detail")
    def pretty_detail(self, event: OutboxEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.detail, indent=2))

    @admin.action(description="Send failed events again")
    def requeue(self, request, queryset):
        count = outbox.requeue_failed_events(event_ids=[str(pk) for pk in queryset.values_list("pk", flat=True)])
        self.message_user(request, f"{count} failed event(s) queued for publishing again.")


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(IdentifierSearch, ReadOnlyAdmin):
    list_display = ("processed_at", "handler", "detail_type", "event_id", "replay_name", "note")
    list_filter = (
        known_values_filter("handler", "handler", lambda: (s.handler_id for s in registry.subscriptions())),
        HANDLED_TYPE_FILTER,
        ("processed_at", admin.DateFieldListFilter),
    )
    # By the producer's event id, which is indexed. This is the largest table (a row per delivery), so
    # the envelope id gets no index and no search of its own.
    uuid_search_fields = ("event_id",)
    show_full_result_count = False


@admin.register(DeliveryFailure)
class DeliveryFailureAdmin(ReadOnlyAdmin):
    """Failed deliveries, under a live table of every queue's and DLQ's depth."""

    list_display = ("last_failed_at", "queue_name", "detail_type", "event_id", "receive_count", "reason")
    list_filter = ("queue_name", "detail_type")
    search_fields = ("event_id", "message_id")

    def changelist_view(self, request, extra_context=None):
        try:
            depths, target_dlq_depth, depth_error = selectors.queue_depths(), selectors.target_dlq_depth(), ""
            task_dlq_depth = selectors.task_dlq_depth()
        except (BotoCoreError, ClientError) as exc:
            depths, target_dlq_depth, depth_error = [], None, aws.explain(exc)
            task_dlq_depth = None
        tasks = topology.task_queue()
        context = {
            "queue_depths": depths,
            "target_dlq_name": topology.target_dlq_name(),
            "target_dlq_depth": target_dlq_depth,
            "task_queue": tasks,
            "task_dlq_depth": task_dlq_depth,
            "depth_error": depth_error,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)


@admin.register(SweepFailure)
class SweepFailureAdmin(ReadOnlyAdmin):
    """Items periodic sweeps are skipping: fix the row (the error says what failed); the sweep's next
    success removes it here."""

    list_display = ("last_failed_at", "sweep", "item", "failures", "first_failed_at", "error")
    list_filter = ("sweep",)
    search_fields = ("item",)
