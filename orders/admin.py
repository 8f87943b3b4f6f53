from __future__ import annotations

import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from eventbus.state_machine import IllegalTransition
from inventory.selectors import catalogue_entries
from observability.timelines import order_timeline
from sagas.selectors import execution_summary
from shopbus_site.admin import IdentifierSearch, PermissionGuardedActions, action_form_page

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

    def __init__(self, *args, catalogue: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.catalogue = catalogue
        self.fields["product_id"].choices = [("", "---------")] + [
            (entry.product_id, f"{entry.name} ({entry.product_id}) · {entry.unit_price} · {entry.available} available")
            for entry in catalogue.values()
        ]

    def clean(self):
        # Refused here rather than placed and then cancelled a second later as out of stock: the
        # customer would get a confirmation-then-cancellation pair of emails for an order staff could
        # see would fail. Stock can still run out between this check and the reservation; the saga
        # handles that race.
        cleaned = super().clean()
        entry = self.catalogue.get(cleaned.get("product_id"))
        quantity = cleaned.get("quantity")
        if entry is not None and quantity is not None and quantity > entry.available:
            self.add_error(
                "quantity",
                f"Only {entry.available} of {entry.name} available; lower the quantity or restock it first."
                if entry.available
                else f"{entry.name} is out of stock; restock it first or choose another product.",
            )
        return cleaned


OrderItemFormSet = forms.formset_factory(OrderItemForm, extra=0, min_num=1, validate_min=True)

# The service's field paths, in the form's words.
_FORM_FIELDS = {
    "customerId": "customer_id",
    "email": "email",
    "paymentToken": "payment_token",
    "shippingAddress.street": "street",
    "shippingAddress.city": "city",
    "shippingAddress.state": "state",
    "shippingAddress.zipCode": "zip_code",
    "shippingAddress.country": "country",
}
_ITEM_PATH = re.compile(r"^items\[(?P<index>\d+)\]\.(?P<field>productId|quantity)$")


class ShipOrderForm(forms.Form):
    carrier = forms.CharField(max_length=100)
    tracking_number = forms.CharField(max_length=100)


class CancelOrdersForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), max_length=500, help_text="Told to the customer."
    )


def _label(status: str) -> str:
    return Order.Status(status).label


def why_not_cancellable(order_id, status: str) -> str:
    """Why staff cannot cancel an order in `status`, and what they can do instead."""
    if status == Order.Status.SHIPPED:
        return (
            f"Order {order_id} has already been {_label(status).lower()}, so it can no longer be cancelled. "
            "Arrange a return with the customer instead."
        )
    return f"Order {order_id} is already {_label(status).lower()}; there is nothing left to cancel."


def why_not_shippable(order_id, status: str) -> str:
    """Why staff cannot ship an order in `status`, and what they can do instead."""
    if status in (Order.Status.PLACED, Order.Status.RESERVED):
        return (
            f"Order {order_id} is {_label(status).lower()} but not confirmed yet, so it cannot ship. "
            "It confirms once its payment is taken; try again then."
        )
    return f"Order {order_id} is {_label(status).lower()}, so it cannot be shipped. Only a confirmed order ships."


@admin.register(Order)
class OrderAdmin(PermissionGuardedActions, IdentifierSearch, admin.ModelAdmin):
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

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # The order change_view already loaded, rather than a second query for it.
        context["order_actions"] = self._order_actions(request, obj) if obj is not None else []
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_cancel_permission(self, request, obj=None):
        return request.user.has_perm("orders.cancel_order")

    def has_ship_permission(self, request, obj=None):
        return request.user.has_perm("orders.ship_order")

    def _order_actions(self, request, order: Order) -> list[tuple[str, str]]:
        """The buttons on an order's page: only the transitions that are legal now, and only for staff
        allowed to make them."""
        actions = []
        if order.can_transition_to(Order.Status.SHIPPED) and self.has_ship_permission(request):
            actions.append(("Ship…", reverse("admin:orders_order_ship", args=[order.pk])))
        if order.can_transition_to(Order.Status.CANCELLED) and self.has_cancel_permission(request):
            actions.append(("Cancel order…", reverse("admin:orders_order_cancel", args=[order.pk])))
        return actions

    def get_urls(self):
        own = [
            path("<uuid:order_id>/cancel/", self.admin_site.admin_view(self.cancel_view), name="orders_order_cancel"),
            path("<uuid:order_id>/ship/", self.admin_site.admin_view(self.ship_view), name="orders_order_ship"),
        ]
        return own + super().get_urls()

    def _back_to(self, order: Order) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:orders_order_change", args=[order.pk]))

    def cancel_view(self, request, order_id):
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        order = get_object_or_404(Order, pk=order_id)
        if not order.can_transition_to(Order.Status.CANCELLED):
            self.message_user(request, why_not_cancellable(order.pk, order.status), level=messages.ERROR)
            return self._back_to(order)
        form = CancelOrdersForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            if self._cancel(request, order, reason=form.cleaned_data["reason"]):
                self.message_user(request, f"Order {order.pk} cancelled. Stock is released and any charge refunded.")
            return self._back_to(order)
        return action_form_page(
            self,
            request,
            [order],
            form=form,
            action="",
            title=f"Cancel order {order.pk}",
            submit_label="Cancel order",
            intro="Stock is released, and anything charged is refunded. The customer is told the reason.",
        )

    def ship_view(self, request, order_id):
        if not self.has_ship_permission(request):
            raise PermissionDenied
        order = get_object_or_404(Order, pk=order_id)
        if not order.can_transition_to(Order.Status.SHIPPED):
            self.message_user(request, why_not_shippable(order.pk, order.status), level=messages.ERROR)
            return self._back_to(order)
        form = ShipOrderForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            if self._ship(request, order, **form.cleaned_data):
                self.message_user(request, f"Order {order.pk} shipped with {form.cleaned_data['carrier']}.")
            return self._back_to(order)
        return action_form_page(
            self, request, [order], form=form, action="", title=f"Ship order {order.pk}", submit_label="Mark shipped"
        )

    def _cancel(self, request, order: Order, *, reason: str) -> bool:
        try:
            services.cancel_order(order_id=order.pk, reason_code=Order.CancellationReason.STAFF, reason=reason)
        except IllegalTransition as exc:
            self.message_user(request, why_not_cancellable(order.pk, exc.current), level=messages.ERROR)
            return False
        self.log_change(request, order, f"Cancelled. Reason given: {reason}")
        return True

    def _ship(self, request, order: Order, *, carrier: str, tracking_number: str) -> bool:
        try:
            services.ship_order(order_id=order.pk, carrier=carrier, tracking_number=tracking_number)
        except IllegalTransition as exc:
            self.message_user(request, why_not_shippable(order.pk, exc.current), level=messages.ERROR)
            return False
        self.log_change(request, order, f"Shipped with {carrier}, tracking number {tracking_number}.")
        return True

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        catalogue = catalogue_entries()
        if request.method == "POST":
            form = PlaceOrderForm(request.POST)
            items = OrderItemFormSet(request.POST, prefix="items", form_kwargs={"catalogue": catalogue})
            if form.is_valid() and items.is_valid():
                order = self._place(request, form, items)
                if order is not None:
                    self.message_user(request, f"Order {order.id} placed for {order.total_amount} {order.currency}.")
                    return self._back_to(order)
        else:
            form = PlaceOrderForm()
            items = OrderItemFormSet(prefix="items", form_kwargs={"catalogue": catalogue})
        context = {
            **self.admin_site.each_context(request),
            "title": "Place order",
            "opts": self.model._meta,
            "form": form,
            "items": items,
            "catalogue": catalogue.values(),
        }
        return TemplateResponse(request, "admin/orders/order/place_order.html", context)

    def _place(self, request, form: PlaceOrderForm, items) -> Order | None:
        data = form.cleaned_data
        filled = [item for item in items if item.cleaned_data.get("product_id")]
        place_request = services.PlaceOrderRequest(
            customer_id=data["customer_id"],
            email=data["email"],
            items=[
                services.OrderItem(product_id=item.cleaned_data["product_id"], quantity=item.cleaned_data["quantity"])
                for item in filled
            ],
            shipping_address={f: data[f if f != "zipCode" else "zip_code"] for f in services.ADDRESS_FIELDS},
            payment_token=data["payment_token"],
        )
        try:
            order = services.place_order(request=place_request)
        except services.OrderValidationError as exc:
            for path, errors in exc.errors.items():
                item = _ITEM_PATH.match(path)
                if item and int(item["index"]) < len(filled):
                    field = "product_id" if item["field"] == "productId" else "quantity"
                    filled[int(item["index"])].add_error(field, errors)
                elif path in _FORM_FIELDS:
                    form.add_error(_FORM_FIELDS[path], errors)
                else:
                    form.add_error(None, errors)
            return None
        lines = ", ".join(f"{item.quantity} × {item.product_id}" for item in place_request.items)
        self.log_addition(request, order, f"Placed from the admin: {lines}; {order.total_amount} {order.currency}.")
        return order

    @admin.action(description="Cancel selected orders…", permissions=["cancel"])
    def cancel_orders(self, request, queryset):
        if "apply" in request.POST:
            form = CancelOrdersForm(request.POST)
            if form.is_valid():
                cancelled = sum(self._cancel(request, order, reason=form.cleaned_data["reason"]) for order in queryset)
                if cancelled:
                    self.message_user(
                        request, f"Cancelled {cancelled} order(s). Stock is released and any charge refunded."
                    )
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
            intro="Stock is released, and anything charged is refunded. The customer is told the reason.",
        )

    @admin.action(description="Mark shipped…", permissions=["ship"])
    def mark_shipped(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(
                request, "Ship one order at a time: each needs its own tracking number.", level=messages.ERROR
            )
            return None
        order = queryset.get()
        if not order.can_transition_to(Order.Status.SHIPPED):
            self.message_user(request, why_not_shippable(order.pk, order.status), level=messages.ERROR)
            return None
        form = ShipOrderForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            if self._ship(request, order, **form.cleaned_data):
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
class ApiClientAdmin(PermissionGuardedActions, admin.ModelAdmin):
    """Client applications. Rotating a key: "Issue a new key", switch the client to it, then revoke
    the old key; the client's orders and idempotency records stay with the client."""

    list_display = ("name", "is_staff", "created_at")
    list_filter = ("is_staff",)
    search_fields = ("name",)
    fields = ("name", "is_staff", "created_at")
    readonly_fields = ("created_at",)
    inlines = [ApiKeyInline]
    actions = ["issue_key"]

    def has_manage_api_keys_permission(self, request, obj=None):
        return request.user.has_perm("orders.manage_api_keys")

    def has_add_permission(self, request):
        return self.has_manage_api_keys_permission(request)

    def has_change_permission(self, request, obj=None):
        return self.has_manage_api_keys_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # a client's orders and idempotency records hang on it; revoke its keys instead

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
            return
        client, plaintext = services.create_api_client(name=obj.name, is_staff=obj.is_staff)
        obj.pk, obj.created_at = client.pk, client.created_at
        obj._state.adding = False
        _show_key_once(self, request, client, plaintext)

    def log_addition(self, request, obj, message):
        kind = "a staff client" if obj.is_staff else "a client"
        prefixes = ", ".join(obj.keys.values_list("prefix", flat=True))
        return super().log_addition(request, obj, f"Created {kind}; key {prefixes}.")

    @admin.action(description="Issue a new key to the selected clients", permissions=["manage_api_keys"])
    def issue_key(self, request, queryset):
        for client in queryset:
            api_key, plaintext = services.issue_api_key(client=client)
            self.log_change(request, client, f"Issued key {api_key.prefix}.")
            _show_key_once(self, request, client, plaintext)


@admin.register(ApiKey)
class ApiKeyAdmin(PermissionGuardedActions, admin.ModelAdmin):
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

    def has_manage_api_keys_permission(self, request, obj=None):
        return request.user.has_perm("orders.manage_api_keys")

    @admin.action(description="Revoke selected keys", permissions=["manage_api_keys"])
    def revoke(self, request, queryset):
        live = list(queryset.filter(revoked_at__isnull=True).select_related("client"))
        count = services.revoke_api_keys(api_key_ids=[api_key.pk for api_key in live])
        for api_key in live:
            self.log_change(request, api_key.client, f"Revoked key {api_key.prefix}.")
        self.message_user(request, f"Revoked {count} key(s).")
