from django.contrib import admin

from shopbus_site.admin import ReadOnlyAdmin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "detail_type", "correlation_id", "event_id")
    list_filter = ("source", "detail_type")
    search_fields = ("=event_id", "=correlation_id")
    date_hierarchy = "occurred_at"
    readonly_fields = [field.name for field in AuditEvent._meta.fields]
