from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from shopbus_site.admin import PermissionGuardedActions, ReadOnlyAdmin, action_form_page

from . import services
from .models import STOCK_COUNT_MAX, STOCK_ON_HAND_LIMIT, Product, Reservation, ReservationLine, StockItem


class ProductAddForm(forms.ModelForm):
    opening_stock = forms.IntegerField(min_value=0, max_value=STOCK_ON_HAND_LIMIT, initial=0)
    low_stock_threshold = forms.IntegerField(min_value=0, max_value=STOCK_COUNT_MAX, initial=10)

    class Meta:
        model = Product
        fields = ["sku", "name", "price", "active"]


class StockItemInline(admin.StackedInline):
    model = StockItem
    fields = ("on_hand", "reserved", "available", "low_stock_threshold")
    readonly_fields = ("on_hand", "reserved", "available")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class RestockForm(forms.Form):
    quantity = forms.IntegerField(
        min_value=1, max_value=STOCK_ON_HAND_LIMIT, help_text="Units added to on hand for each selected product."
    )
    reason = forms.CharField(max_length=200, help_text="Kept in each product's history, e.g. a delivery note.")


@admin.register(Product)
class ProductAdmin(PermissionGuardedActions, admin.ModelAdmin):
    list_display = ("sku", "name", "price", "active", "on_hand", "reserved", "available", "low_stock")
    list_select_related = ("stock",)
    list_filter = ("active",)
    search_fields = ("sku", "name")
    actions = ["restock"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ProductAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return ("sku", "created_at") if obj else ("created_at",)

    def has_restock_permission(self, request, obj=None):
        return request.user.has_perm("inventory.restock_product")

    def get_inlines(self, request, obj):
        return [StockItemInline] if obj else []

    def save_formset(self, request, form, formset, change):
        if formset.model is not StockItem:
            return super().save_formset(request, form, formset, change)
        # The inline edits the threshold alone; the counts it shows were read before a consumer may
        # have changed them, so the form's instance is never saved whole.
        formset.new_objects, formset.deleted_objects, formset.changed_objects = [], [], []
        for stock_form in formset.forms:
            if stock_form.has_changed():
                item = services.set_low_stock_threshold(
                    product_id=form.instance.pk, threshold=stock_form.cleaned_data["low_stock_threshold"]
                )
                formset.changed_objects.append((item, stock_form.changed_data))
        return None

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            obj.save()
            if not change:
                services.open_stock(
                    product=obj,
                    on_hand=form.cleaned_data["opening_stock"],
                    low_stock_threshold=form.cleaned_data["low_stock_threshold"],
                )

    def _stock(self, product: Product) -> StockItem | None:
        return getattr(product, "stock", None)

    @admin.display(description="On hand")
    def on_hand(self, product: Product) -> int | None:
        stock = self._stock(product)
        return stock.on_hand if stock else None

    @admin.display(description="Reserved")
    def reserved(self, product: Product) -> int | None:
        stock = self._stock(product)
        return stock.reserved if stock else None

    @admin.display(description="Available")
    def available(self, product: Product) -> int | None:
        stock = self._stock(product)
        return stock.available if stock else None

    @admin.display(description="Low stock", boolean=True)
    def low_stock(self, product: Product) -> bool | None:
        stock = self._stock(product)
        return stock.is_low if stock else None

    @admin.action(description="Restock selected products…", permissions=["restock"])
    def restock(self, request, queryset):
        if "apply" in request.POST:
            form = RestockForm(request.POST)
            if form.is_valid():
                try:
                    rows = services.restock(
                        product_ids=list(queryset.values_list("pk", flat=True)), quantity=form.cleaned_data["quantity"]
                    )
                except services.StockError as error:
                    form.add_error("quantity", str(error))
                else:
                    quantity, reason = form.cleaned_data["quantity"], form.cleaned_data["reason"]
                    for row in rows:
                        self.log_change(request, row.product, f"Restocked {quantity} unit(s). Reason given: {reason}")
                    self.message_user(request, f"Restocked {len(rows)} product(s); Stock Updated published for each.")
                    missing = queryset.count() - len(rows)
                    if missing:
                        self.message_user(
                            request, f"{missing} product(s) have no stock record.", level=messages.WARNING
                        )
                    return None
        else:
            form = RestockForm()
        return action_form_page(
            self, request, queryset, form=form, action="restock", title="Restock products", submit_label="Restock"
        )


class ReservationLineInline(admin.TabularInline):
    model = ReservationLine
    fields = ("product", "quantity")
    readonly_fields = fields
    extra = 0


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "status", "failure_reason_code", "created_at", "updated_at")
    list_filter = ("status",)
    search_fields = ("order_id",)
    inlines = [ReservationLineInline]
    readonly_fields = ("order_id", "status", "failure_reason_code", "failure_reason", "created_at", "updated_at")
