from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from shopbus_site.admin import IdentifierSearch, PermissionGuardedActions, ReadOnlyAdmin, known_values_filter

from . import aws, event_types, outbox, registry, selectors, services, topology
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
class OutboxEventAdmin(PermissionGuardedActions, IdentifierSearch, ReadOnlyAdmin):
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

    def has_redrive_permission(self, request) -> bool:
        # Publishing an event again is an operator's move, as a DLQ redrive is; view-only staff may not.
        return request.user.has_perm("eventbus.redrive_dead_letters")

    @admin.action(description="Send failed events again", permissions=["redrive"])
    def requeue(self, request, queryset):
        requeued = outbox.requeue_failed_events(event_ids=[str(pk) for pk in queryset.values_list("pk", flat=True)])
        for event in requeued:
            self.log_change(request, event, f"Sent again after: {event.last_error}")
        self.message_user(request, f"{len(requeued)} failed event(s) queued for publishing again.")


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


class RedriveForm(forms.Form):
    queue = forms.CharField()
    max_messages = forms.IntegerField(min_value=1, max_value=1000, initial=100)


@admin.register(DeliveryFailure)
class DeliveryFailureAdmin(ReadOnlyAdmin):
    """Failing events, one row each with where it stands, under a live table of every queue's and
    DLQ's depth, from which staff allowed to (eventbus.redrive_dead_letters) redrive a DLQ."""

    list_display = (
        "last_failed_at",
        "state",
        "state_changed_at",
        "queue_name",
        "detail_type",
        "event_id",
        "receive_count",
        "short_reason",
    )
    list_filter = ("queue_name", "detail_type")
    search_fields = ("event_id", "message_id")

    def has_redrive_permission(self, request) -> bool:
        return request.user.has_perm("eventbus.redrive_dead_letters")

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        states = selectors.failure_states(failures=list(changelist.result_list))
        for failure in changelist.result_list:
            failure.current = states[failure.pk]
        return changelist

    @admin.display(description="Reason")
    def short_reason(self, failure: DeliveryFailure) -> str:
        # The whole reason (a traceback, say) is on the row's own page; a list row stays one line.
        first_line = failure.reason.splitlines()[0] if failure.reason else ""
        return first_line if len(first_line) <= 120 else f"{first_line[:120]}…"

    @admin.display(description="State")
    def state(self, failure: DeliveryFailure) -> str:
        return failure.current.state

    @admin.display(description="State since")
    def state_changed_at(self, failure: DeliveryFailure):
        return failure.current.since

    def get_urls(self):
        redrive = path(
            "redrive/", self.admin_site.admin_view(self.redrive_view), name="eventbus_deliveryfailure_redrive"
        )
        return [redrive, *super().get_urls()]

    def redrive_view(self, request):
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:eventbus_deliveryfailure_changelist"))
        if not self.has_redrive_permission(request):
            raise PermissionDenied
        form = RedriveForm(request.POST)
        try:
            queue = topology.queue_for(form.data.get("queue", ""))
        except LookupError:
            queue = None
        if not form.is_valid() or queue is None:
            self.message_user(request, "Choose a queue and how many messages to move (1 to 1000).", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:eventbus_deliveryfailure_changelist"))
        try:
            report = services.redrive_dead_letters(queue=queue, max_messages=form.cleaned_data["max_messages"])
        except (BotoCoreError, ClientError) as exc:  # before anything moved: the queues' addresses
            self.message_user(request, f"Nothing moved: {aws.explain(exc)}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:eventbus_deliveryfailure_changelist"))
        for failure in DeliveryFailure.objects.filter(message_id__in=report.moved_message_ids):
            self.log_change(request, failure, f"Redriven from {queue.dlq_name} to {queue.name}.")
        problems = report.problems(queue)
        self.message_user(
            request,
            f"Moved {report.moved} message(s) from {queue.dlq_name} back to {queue.name}"
            + (f"; {'; '.join(problems)}." if problems else "."),
            messages.WARNING if problems else messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:eventbus_deliveryfailure_changelist"))

    def changelist_view(self, request, extra_context=None):
        try:
            depths, depth_error = selectors.bus_depths(), ""
        except (BotoCoreError, ClientError) as exc:
            depths, depth_error = None, aws.explain(exc)
        context = {
            "queue_depths": depths.queues if depths else [],
            "target_dlq_name": topology.target_dlq_name(),
            "target_dlq_depth": depths.target_dlq_depth if depths else None,
            "task_queue": topology.task_queue(),
            "task_dlq_depth": depths.task_dlq_depth if depths else None,
            "depth_error": depth_error,
            "can_redrive": self.has_redrive_permission(request),
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
