from django.contrib import admin

from shopbus_site.admin import ReadOnlyAdmin

from . import selectors
from .models import HourlyEventCount, OrderTimeline


@admin.register(HourlyEventCount)
class HourlyEventCountAdmin(ReadOnlyAdmin):
    list_display = ("hour", "detail_type", "count")
    list_filter = ("detail_type",)
    date_hierarchy = "hour"


@admin.register(OrderTimeline)
class OrderTimelineAdmin(ReadOnlyAdmin):
    """Per-order stage times, under a summary of the analytics aggregates."""

    list_display = ("order_id", "placed_at", "reserved_at", "paid_at", "confirmed_at", "cancelled_at", "total_amount")
    list_filter = ("cancellation_reason_code",)
    search_fields = ("=order_id",)
    date_hierarchy = "placed_at"

    def changelist_view(self, request, extra_context=None):
        window = request.GET.get("window", "24h")
        if window not in selectors.WINDOWS:
            window = "24h"
        # The window is the summary's, not a filter of the list below.
        request.GET = request.GET.copy()
        request.GET.pop("window", None)
        context = {
            "summary": selectors.summary(window=window),
            "window": window,
            "windows": list(selectors.WINDOWS),
            "latency_sample": selectors.LATENCY_SAMPLE,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)
