from django.contrib import admin
from django.utils.html import escape, format_html

from shopbus_site.admin import ReadOnlyAdmin

from . import services
from .models import Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "recipient", "status", "attempts", "sent_at", "correlation_id")
    list_filter = ("status", "kind", "channel")
    search_fields = ("recipient", "correlation_id", "event_id")
    date_hierarchy = "created_at"
    fields = [
        "kind",
        "recipient",
        "subject",
        "body",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "requeued_at",
        "sent_at",
        "event_id",
        "correlation_id",
        "channel",
        "context",
    ]
    readonly_fields = fields

    # What the customer received: the email as sent, rendered from the same templates and the context
    # stored with the notification.
    @admin.display(description="Subject")
    def subject(self, notification: Notification) -> str:
        return services.subject(notification)

    @admin.display(description="Body")
    def body(self, notification: Notification) -> str:
        # The text part is plain text, rendered without autoescaping (render_to_string marks it safe
        # all the same): escaped here, so an event's content cannot become markup on this page.
        text = services.render(notification)[1]
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', escape(text))
