from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from eventbus.state_machine import IllegalTransition
from inventory.selectors import catalogue_entries
from observability.timelines import order_timeline
from sagas.selectors import execution_summary
from shopbus_site.admin import IdentifierSearch, action_form_page

from . import services
from .models import ApiClient, ApiKey, Order, OrderLine


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    fields = ("product_id", "product_name", "unit_price", "quantity", "line_total")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class PlaceOrderForm(forms.Form):
    customer_id = forms.CharField(max_length=200)
    email = forms.EmailField()
    street = forms.CharField(max_length=200)
    city = forms.CharField(max_length=200)
    state = forms.CharField(max_length=200)
    zip_code = forms.CharField(max_length=200, label="ZIP code")
    country = forms.CharField(max_length=200)
    payment_token = forms.CharField(max_length=100, initial="tok_visa")


class OrderItemForm(forms.Form):
    product_id = forms.ChoiceField(label="Product")
    quantity = forms.IntegerField(min_value=1, initial=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["product_id"].choices = [("", "---------")] + [
            (entry.product_id, f"{entry.product_id} {entry.name} ({entry.unit_price}, {entry.available} available)")
            for entry in catalogue_entries().values()
        ]


OrderItemFormSet = forms.formset_factory(OrderItemForm, extra=3, min_num=1, validate_min=True)

# Service field paths mapped to the admin form's fields.
_ADDRESS_FORM_FIELDS = {
    "shippingAddress.zipCode": "zip_code",
    "customerId": "customer_id",
    "paymentToken": "payment_token",
}


class ShipOrderForm(forms.Form):
    carrier = forms.CharField(max_length=100)
    tracking_number = forms.CharField(max_length=100)


class CancelOrdersForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), max_length=500, help_text="Told to the customer."
    )


@admin.register(Order)
class OrderAdmin(IdentifierSearch, admin.ModelAdmin):
    list_display = ("id", "customer_id", "email", "status", "total_amount", "currency", "created_at")
    list_filter = ("status", ("created_at", admin.DateFieldListFilter))
    uuid_search_fields = ("id",)
    text_search_fields = ("customer_id",)
    email_search_fields = ("email",)
    show_full_result_count = False
    inlines = [OrderLineInline]
    actions = ["cancel_orders", "mark_shipped"]
    readonly_fields = [
        "id",
        "status",
        "api_client",
        "customer_id",
        "email",
        "total_amount",
        "currency",
        "shipping_street",
        "shipping_city",
        "shipping_state",
        "shipping_zip_code",
        "shipping_country",
        "payment_token",
        "cancellation_reason_code",
        "cancellation_reason",
        "carrier",
        "tracking_number",
        "refunded_at",
        "created_at",
        "status_changed_at",
        "updated_at",
    ]

    def has_change_permission(self, request, obj=None):
        # Orders change only through the saga and the actions, never by editing fields.
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The order's story: its events, who handled them and when, failures, and the records
        # other services keep for it (reached through their own admin pages, searched by order id).
        extra_context = {
            **(extra_context or {}),
            "timeline": order_timeline(order_id=object_id),
            "saga": execution_summary(order_id=object_id),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def has_delete_permission(self, request, obj=None):
        return False

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = PlaceOrderForm(request.POST)
            items = OrderItemFormSet(request.POST, prefix="items")
            if form.is_valid() and items.is_valid():
                order = self._place(form, items)
                if order is not None:
                    self.message_user(request, f"Order {order.id} placed for {order.total_amount} {order.currency}.")
                    return HttpResponseRedirect(reverse("admin:orders_order_change", args=[order.pk]))
        else:
            form = PlaceOrderForm()
            items = OrderItemFormSet(prefix="items")
        context = {
            **self.admin_site.each_context(request),
            "title": "Place order",
            "opts": self.model._meta,
            "form": form,
            "items": items,
        }
        return TemplateResponse(request, "admin/orders/order/place_order.html", context)

    def _place(self, form: PlaceOrderForm, items) -> Order | None:
        data = form.cleaned_data
        filled = [item.cleaned_data for item in items if item.cleaned_data.get("product_id")]
        request = services.PlaceOrderRequest(
            customer_id=data["customer_id"],
            email=data["email"],
            items=[services.OrderItem(product_id=item["product_id"], quantity=item["quantity"]) for item in filled],
            shipping_address={f: data[f if f != "zipCode" else "zip_code"] for f in services.ADDRESS_FIELDS},
            payment_token=data["payment_token"],
        )
        try:
            return services.place_order(request=request)
        except services.OrderValidationError as exc:
            for path, errors in exc.errors.items():
                field = _ADDRESS_FORM_FIELDS.get(path, path.split(".")[-1])
                target = field if field in form.fields else None
                form.add_error(target, [f"{path}: {message}" if target is None else message for message in errors])
            return None

    @admin.action(description="Cancel selected orders…")
    def cancel_orders(self, request, queryset):
        if "apply" in request.POST:
            form = CancelOrdersForm(request.POST)
            if form.is_valid():
                cancelled, refused = 0, []
                for order in queryset:
                    try:
                        services.cancel_order(
                            order_id=order.pk,
                            reason_code=Order.CancellationReason.STAFF,
                            reason=form.cleaned_data["reason"],
                        )
                        cancelled += 1
                    except IllegalTransition:
                        refused.append(f"{order.pk} ({order.status})")
                if cancelled:
                    self.message_user(request, f"Cancelled {cancelled} order(s).")
                if refused:
                    self.message_user(request, "Not cancellable: " + ", ".join(refused), level=messages.WARNING)
                return None
        else:
            form = CancelOrdersForm()
        return action_form_page(
            self,
            request,
            queryset,
            form=form,
            action="cancel_orders",
            title="Cancel orders",
            submit_label="Cancel orders",
            intro="Stock is released, and anything charged is refunded.",
        )

    @admin.action(description="Mark shipped…")
    def mark_shipped(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(
                request, "Ship one order at a time: each needs its own tracking number.", level=messages.ERROR
            )
            return None
        order = queryset.get()
        form = ShipOrderForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                services.ship_order(order_id=order.pk, **form.cleaned_data)
            except IllegalTransition as exc:
                self.message_user(
                    request, f"Not shipped: only a confirmed order can ship ({exc.current}).", level=messages.ERROR
                )
            else:
                self.message_user(request, f"Order {order.pk} shipped with {form.cleaned_data['carrier']}.")
            return None
        return action_form_page(
            self, request, queryset, form=form, action="mark_shipped", title="Mark shipped", submit_label="Mark shipped"
        )


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


def _show_key_once(model_admin: admin.ModelAdmin, request, client: ApiClient, plaintext: str) -> None:
    model_admin.message_user(
        request,
        f"New key for {client.name}: {plaintext} — copy it now, it is not shown again.",
        level=messages.WARNING,
    )


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """Client applications. Rotating a key: "Issue a new key", switch the client to it, then revoke
    the old key; the client's orders and idempotency records stay with the client."""

    list_display = ("name", "is_staff", "created_at")
    list_filter = ("is_staff",)
    search_fields = ("name",)
    fields = ("name", "is_staff", "created_at")
    readonly_fields = ("created_at",)
    inlines = [ApiKeyInline]
    actions = ["issue_key"]

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
            return
        client, plaintext = services.create_api_client(name=obj.name, is_staff=obj.is_staff)
        obj.pk, obj.created_at = client.pk, client.created_at
        obj._state.adding = False
        _show_key_once(self, request, client, plaintext)

    @admin.action(description="Issue a new key to the selected clients")
    def issue_key(self, request, queryset):
        for client in queryset:
            _, plaintext = services.issue_api_key(client=client)
            _show_key_once(self, request, client, plaintext)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are issued from their client's page; here they are listed and revoked. The secret is
    stored only as a hash and never shown after issue."""

    list_display = ("prefix", "client", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("client",)
    search_fields = ("=prefix", "client__name")
    fields = ("prefix", "client", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        count = services.revoke_api_keys(api_key_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Revoked {count} key(s).")
