from django.contrib import admin

from shopbus_site.admin import ReadOnlyAdmin

from .models import Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "recipient", "status", "attempts", "sent_at", "correlation_id")
    list_filter = ("status", "kind", "channel")
    search_fields = ("recipient", "correlation_id", "event_id")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Notification._meta.fields]
