from django.contrib import admin

from shopbus_site.admin import ReadOnlyAdmin

from .models import Payment, Refund


class RefundInline(admin.StackedInline):
    model = Refund
    fields = ("id", "amount", "gateway_reference", "created_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "status", "amount", "currency", "failure_code", "charged_at", "created_at")
    list_filter = ("status", "failure_code")
    search_fields = ("=id", "order_id", "customer_email", "gateway_reference")
    date_hierarchy = "created_at"
    inlines = [RefundInline]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("payment", "amount", "gateway_reference", "created_at")
    list_select_related = ("payment",)
    search_fields = ("payment__order_id", "gateway_reference")
    date_hierarchy = "created_at"
