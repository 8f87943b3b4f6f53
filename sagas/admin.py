from django.contrib import admin

from shopbus_site.admin import ReadOnlyAdmin

from .models import SagaReply


@admin.register(SagaReply)
class SagaReplyAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "order_id", "command", "succeeded", "error", "status", "attempts", "sent_at")
    list_filter = ("status", "command", "succeeded")
    search_fields = ("=order_id",)
    date_hierarchy = "created_at"
    exclude = ("task_token",)
