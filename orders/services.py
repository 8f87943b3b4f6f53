"""Orders writes: placing and cancelling orders, the saga's reactions, API keys and idempotency keys."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from eventbus import event_types
from eventbus.state_machine import IllegalTransition
from inventory.selectors import catalogue_entries

from .models import ApiKey, IdempotencyKey, Order, OrderLine

logger = logging.getLogger(__name__)

ADDRESS_FIELDS = ("street", "city", "state", "zipCode", "country")


class OrderValidationError(ValueError):
    """Field errors keyed by the API's field paths, e.g. 'items[0].quantity' or 'shippingAddress.city'."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))
        self.errors = errors


class IdempotencyKeyReused(ValueError):
    pass


@dataclass(frozen=True)
class OrderItem:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class PlaceOrderRequest:
    customer_id: str
    email: str
    items: list[OrderItem]
    shipping_address: dict[str, str]
    payment_token: str = "tok_visa"

    def fingerprint(self) -> str:
        canonical = repr(
            (
                self.customer_id,
                self.email,
                sorted((item.product_id, item.quantity) for item in self.items),
                sorted(self.shipping_address.items()),
                self.payment_token,
            )
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def _validate(request: PlaceOrderRequest) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if not request.customer_id.strip():
        add("customerId", "This field is required.")
    elif len(request.customer_id) > 200:
        add("customerId", "Must be at most 200 characters.")
    try:
        validate_email(request.email)
    except ValidationError:
        add("email", "Enter a valid email address.")
    if not request.items:
        add("items", "An order needs at least one item.")
    elif len(request.items) > settings.ORDER_MAX_ITEMS:
        add("items", f"An order can have at most {settings.ORDER_MAX_ITEMS} items.")
    seen: set[str] = set()
    for index, item in enumerate(request.items):
        if item.quantity < 1:
            add(f"items[{index}].quantity", "Must be at least 1.")
        elif item.quantity > settings.ORDER_MAX_QUANTITY:
            add(f"items[{index}].quantity", f"Must be at most {settings.ORDER_MAX_QUANTITY}.")
        if item.product_id in seen:
            add(f"items[{index}].productId", "This product is already in the order; combine the quantities.")
        seen.add(item.product_id)
    for field in ADDRESS_FIELDS:
        value = request.shipping_address.get(field, "")
        if not value.strip():
            add(f"shippingAddress.{field}", "This field is required.")
        elif len(value) > 200:
            add(f"shippingAddress.{field}", "Must be at most 200 characters.")
    if not request.payment_token.strip() or len(request.payment_token) > 100:
        add("paymentToken", "Must be 1 to 100 characters.")
    return errors


def place_order(*, request: PlaceOrderRequest) -> Order:
    """Validate, price from the catalogue and record the order; `Order Placed` commits with it."""
    errors = _validate(request)
    prices = catalogue_entries(product_ids=[item.product_id for item in request.items])
    for index, item in enumerate(request.items):
        if item.product_id not in prices:
            errors.setdefault(f"items[{index}].productId", []).append(f"Unknown product {item.product_id!r}.")
    if errors:
        raise OrderValidationError(errors)

    lines = [
        OrderLine(
            product_id=item.product_id,
            product_name=prices[item.product_id].name,
            unit_price=prices[item.product_id].unit_price,
            quantity=item.quantity,
        )
        for item in request.items
    ]
    address = request.shipping_address
    order = Order(
        customer_id=request.customer_id.strip(),
        email=request.email,
        total_amount=sum((line.line_total for line in lines), Decimal("0.00")),
        currency=settings.SHOP_CURRENCY,
        shipping_street=address["street"],
        shipping_city=address["city"],
        shipping_state=address["state"],
        shipping_zip_code=address["zipCode"],
        shipping_country=address["country"],
        payment_token=request.payment_token,
    )
    order.record_event(
        event_types.ORDER_PLACED,
        {
            **_order_identity(order),
            "items": [
                {
                    "productId": line.product_id,
                    "name": line.product_name,
                    "unitPrice": event_types.money(line.unit_price),
                    "quantity": line.quantity,
                }
                for line in lines
            ],
            "totalAmount": event_types.money(order.total_amount),
            "currency": order.currency,
            "shippingAddress": order.shipping_address,
            "paymentToken": order.payment_token,
        },
        correlation_id=order.id,
    )
    with transaction.atomic():
        order.save(force_insert=True)
        for line in lines:
            line.order = order
        OrderLine.objects.bulk_create(lines)
    logger.info("order %s placed: %s %s", order.id, order.total_amount, order.currency)
    return order


def place_order_idempotently(
    *, api_key: ApiKey, idempotency_key: str, request: PlaceOrderRequest
) -> tuple[Order, bool]:
    """Place an order once per (client, Idempotency-Key). Returns (order, created)."""
    fingerprint = request.fingerprint()

    def replay() -> tuple[Order, bool] | None:
        existing = IdempotencyKey.objects.select_related("order").filter(api_key=api_key, key=idempotency_key).first()
        if existing is None:
            return None
        if not hmac.compare_digest(existing.request_fingerprint, fingerprint):
            raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request.")
        return existing.order, False

    earlier = replay()
    if earlier:
        return earlier
    try:
        with transaction.atomic():
            order = place_order(request=request)
            IdempotencyKey.objects.create(
                api_key=api_key, key=idempotency_key, request_fingerprint=fingerprint, order=order
            )
    except IntegrityError:
        # A concurrent retry with the same key won the race; its order is the answer.
        earlier = replay()
        if earlier is None:
            raise
        return earlier
    return order, True


def purge_expired_idempotency_keys() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _order_identity(order: Order) -> dict[str, str]:
    return {"orderId": str(order.id), "customerId": order.customer_id, "email": order.email}


def _lock(order_id: uuid.UUID) -> Order:
    return Order.objects.select_for_update().get(pk=order_id)


def _cancel(order: Order, *, reason_code: str, reason: str) -> None:
    previous = order.transition_to(Order.Status.CANCELLED)
    order.cancellation_reason_code = reason_code
    order.cancellation_reason = reason[:500]
    order.record_event(
        event_types.ORDER_CANCELLED,
        {
            **_order_identity(order),
            "reasonCode": reason_code,
            "reason": order.cancellation_reason,
            "previousStatus": previous,
        },
        correlation_id=order.id,
    )
    logger.info("order %s cancelled from %s: %s", order.id, previous, reason_code)


@transaction.atomic
def cancel_order(*, order_id: uuid.UUID, reason_code: str, reason: str) -> Order:
    """Cancel from PLACED, RESERVED or CONFIRMED; raises IllegalTransition otherwise. Inventory and
    payments compensate when they see `Order Cancelled`."""
    if reason_code not in Order.CancellationReason.values:
        raise ValueError(f"unknown cancellation reason code {reason_code!r}")
    order = _lock(order_id)
    _cancel(order, reason_code=reason_code, reason=reason)
    order.save()
    return order


# Handler-path services open no savepoint (docs/architecture.md, "Savepoints").
def _react(order_id: uuid.UUID, change: Callable[[Order], None]) -> str:
    """Apply a saga step. A late or out-of-order event for an order that has moved on is ignored:
    the handler still records it as processed, and says why in its note."""
    with transaction.atomic(savepoint=False):
        order = _lock(order_id)
        try:
            change(order)
        except IllegalTransition as exc:
            logger.info("order %s: event ignored: %s", order_id, exc)
            return f"ignored: order is {order.status}"
        order.save()
        return order.status


def mark_order_reserved(*, order_id: uuid.UUID) -> str:
    return _react(order_id, lambda order: order.transition_to(Order.Status.RESERVED))


def cancel_for_missing_stock(*, order_id: uuid.UUID, reason: str) -> str:
    return _react(
        order_id,
        lambda order: _cancel(
            order, reason_code=Order.CancellationReason.OUT_OF_STOCK, reason=reason or "Some items are out of stock."
        ),
    )


def _confirm(order: Order) -> None:
    if order.status == Order.Status.PLACED:
        # Payment Processed overtook Inventory Reserved on our queue. Payments charges only after
        # inventory reserved, so the payment proves the reservation; the late event is then ignored.
        order.transition_to(Order.Status.RESERVED)
    order.transition_to(Order.Status.CONFIRMED)
    order.record_event(
        event_types.ORDER_CONFIRMED,
        {**_order_identity(order), "totalAmount": event_types.money(order.total_amount), "currency": order.currency},
        correlation_id=order.id,
    )


@transaction.atomic
def confirm_order(*, order_id: uuid.UUID) -> Order:
    """The orchestrated saga's last step. Raises IllegalTransition unless PLACED or RESERVED."""
    order = _lock(order_id)
    _confirm(order)
    order.save()
    return order


def confirm_paid_order(*, order_id: uuid.UUID) -> str:
    return _react(order_id, _confirm)


def cancel_for_failed_payment(*, order_id: uuid.UUID, reason: str) -> str:
    return _react(
        order_id,
        lambda order: _cancel(
            order, reason_code=Order.CancellationReason.PAYMENT_FAILED, reason=reason or "The payment was declined."
        ),
    )


@transaction.atomic(savepoint=False)
def note_order_refunded(*, order_id: uuid.UUID) -> str:
    order = _lock(order_id)
    if order.refunded_at is None:
        order.refunded_at = timezone.now()
        order.save(update_fields=["refunded_at", "updated_at"])
    return f"refund noted; order is {order.status}"


@transaction.atomic
def ship_order(*, order_id: uuid.UUID, carrier: str, tracking_number: str) -> Order:
    """Staff hand a confirmed order to a carrier. Raises IllegalTransition unless it is CONFIRMED."""
    carrier, tracking_number = carrier.strip(), tracking_number.strip()
    if not carrier or not tracking_number:
        raise ValueError("A carrier and a tracking number are both needed.")
    order = _lock(order_id)
    order.transition_to(Order.Status.SHIPPED)
    order.carrier, order.tracking_number = carrier[:100], tracking_number[:100]
    order.record_event(
        event_types.ORDER_SHIPPED,
        {**_order_identity(order), "carrier": order.carrier, "trackingNumber": order.tracking_number},
        correlation_id=order.id,
    )
    order.save()
    return order


def cancel_stuck_orders(*, older_than: timedelta | None = None) -> list[uuid.UUID]:
    """Cancel orders left in PLACED or RESERVED too long (TIMEOUT); each in its own transaction, so
    one order that moves on meanwhile does not stop the rest.

    With ORDER_SAGA=stepfunctions each step of the state machine times out and compensates instead,
    so this sweep stands down rather than race the execution."""
    if settings.ORDER_SAGA == "stepfunctions":
        return []
    if older_than is None:
        older_than = timedelta(minutes=settings.ORDER_TIMEOUT_MINUTES)
    cutoff = timezone.now() - older_than
    stuck = Order.objects.filter(
        status__in=[Order.Status.PLACED, Order.Status.RESERVED], status_changed_at__lt=cutoff
    ).values_list("pk", flat=True)
    cancelled = []
    for order_id in stuck:
        with transaction.atomic():
            order = _lock(order_id)
            if order.status not in (Order.Status.PLACED, Order.Status.RESERVED) or order.status_changed_at >= cutoff:
                continue
            _cancel(order, reason_code=Order.CancellationReason.TIMEOUT, reason="The order was not completed in time.")
            order.save()
            cancelled.append(order_id)
    return cancelled


# --- API keys ---------------------------------------------------------------------------------

API_KEY_PREFIX = "sb"


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(*, name: str) -> tuple[ApiKey, str]:
    """Returns the key and its plaintext, which is shown once and never stored."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(name=name, prefix=prefix, hashed_secret=_hash_secret(secret))
    return api_key, f"{API_KEY_PREFIX}_{prefix}_{secret}"


def authenticate_api_key(*, presented: str) -> ApiKey | None:
    try:
        marker, prefix, secret = presented.split("_", 2)
    except ValueError:
        return None
    if marker != API_KEY_PREFIX:
        return None
    api_key = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
    if api_key is None or not hmac.compare_digest(api_key.hashed_secret, _hash_secret(secret)):
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > timedelta(minutes=1):
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)  # ApiKey is not evented
    return api_key


def revoke_api_keys(*, api_key_ids: list[int]) -> int:
    return ApiKey.objects.filter(pk__in=api_key_ids, revoked_at__isnull=True).update(revoked_at=timezone.now())
