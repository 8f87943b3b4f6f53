from django.contrib import admin

from eventbus import event_types
from shopbus_site.admin import IdentifierSearch, ReadOnlyAdmin, known_values_filter

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(IdentifierSearch, ReadOnlyAdmin):
    list_display = ("occurred_at", "detail_type", "correlation_id", "event_id")
    list_filter = (
        known_values_filter("source", "source", lambda: (t.source for t in event_types.ALL_EVENT_TYPES)),
        known_values_filter("detail_type", "detail-type", lambda: (t.detail_type for t in event_types.ALL_EVENT_TYPES)),
        ("occurred_at", admin.DateFieldListFilter),
    )
    uuid_search_fields = ("event_id",)
    text_search_fields = ("correlation_id",)
    show_full_result_count = False
    readonly_fields = [field.name for field in AuditEvent._meta.fields]
