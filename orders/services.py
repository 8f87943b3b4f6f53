"""Orders writes: placing and cancelling orders, the saga's reactions, API keys and idempotency keys."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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
from eventbus.sweeps import Sweep, delete_in_batches
from inventory.selectors import catalogue_entries
from sagas.selectors import execution_running

from .models import ApiClient, ApiKey, IdempotencyKey, Order, OrderLine

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


def unprintable(value: str) -> bool:
    """Control characters (NUL among them, which PostgreSQL's text refuses) and lone surrogates (which
    no encoding can store) have no place in a name, an address or an id, nor in the events and emails
    made from them."""
    return any(unicodedata.category(character) in ("Cc", "Cs") for character in value)


def shortened(value: str, *, limit: int = 40) -> str:
    """A client's value echoed in an error, cut short: an error must not grow with the input."""
    return value if len(value) <= limit else f"{value[:limit]}…"


_MONEY_FIELD = Order._meta.get_field("total_amount")
LARGEST_ORDER_TOTAL = Decimal(10 ** (_MONEY_FIELD.max_digits - _MONEY_FIELD.decimal_places)) - Decimal("0.01")


def _validate(request: PlaceOrderRequest) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    def printable(field: str, value: str) -> bool:
        if unprintable(value):
            add(field, "Must not contain control characters.")
            return False
        return True

    if printable("customerId", request.customer_id):
        if not request.customer_id.strip():
            add("customerId", "This field is required.")
        elif len(request.customer_id) > 200:
            add("customerId", "Must be at most 200 characters.")
    if printable("email", request.email):
        try:
            validate_email(request.email)
        except ValidationError:
            add("email", "Enter a valid email address.")
    for field in ADDRESS_FIELDS:
        value = request.shipping_address.get(field, "")
        if not printable(f"shippingAddress.{field}", value):
            continue
        if not value.strip():
            add(f"shippingAddress.{field}", "This field is required.")
        elif len(value) > 200:
            add(f"shippingAddress.{field}", "Must be at most 200 characters.")
    if printable("paymentToken", request.payment_token) and (
        not request.payment_token.strip() or len(request.payment_token) > 100
    ):
        add("paymentToken", "Must be 1 to 100 characters.")
    if not request.items:
        add("items", "An order needs at least one item.")
        return errors
    if len(request.items) > settings.ORDER_MAX_ITEMS:
        # Item by item errors would grow with the request; this one says all there is to fix.
        add("items", f"An order can have at most {settings.ORDER_MAX_ITEMS} items.")
        return errors
    seen: set[str] = set()
    for index, item in enumerate(request.items):
        if item.quantity < 1:
            add(f"items[{index}].quantity", "Must be at least 1.")
        elif item.quantity > settings.ORDER_MAX_QUANTITY:
            add(f"items[{index}].quantity", f"Must be at most {settings.ORDER_MAX_QUANTITY}.")
        if not printable(f"items[{index}].productId", item.product_id):
            continue
        if item.product_id in seen:
            add(f"items[{index}].productId", "This product is already in the order; combine the quantities.")
        seen.add(item.product_id)
    return errors


def place_order(*, request: PlaceOrderRequest, client: ApiClient | None = None) -> Order:
    """Validate, price from the catalogue and record the order, for `client` if an API client placed
    it; `Order Placed` commits with it. Nothing is written unless the whole order is valid."""
    errors = _validate(request)
    if errors:
        raise OrderValidationError(errors)
    prices = catalogue_entries(product_ids=[item.product_id for item in request.items])
    for index, item in enumerate(request.items):
        if item.product_id not in prices:
            errors.setdefault(f"items[{index}].productId", []).append(
                f"Unknown product {shortened(item.product_id)!r}."
            )
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
    total_amount = sum((line.line_total for line in lines), Decimal("0.00"))
    if total_amount > LARGEST_ORDER_TOTAL:
        raise OrderValidationError(
            {
                "items": [
                    f"The order's total, {total_amount} {settings.SHOP_CURRENCY}, is more than one order can hold "
                    f"({LARGEST_ORDER_TOTAL}); split it into several orders."
                ]
            }
        )
    address = request.shipping_address
    order = Order(
        api_client=client,
        customer_id=request.customer_id.strip(),
        email=request.email,
        total_amount=total_amount,
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
    *, client: ApiClient, idempotency_key: str, request: PlaceOrderRequest
) -> tuple[Order, bool]:
    """Place an order once per (client, Idempotency-Key). Returns (order, created)."""
    fingerprint = request.fingerprint()

    def replay() -> tuple[Order, bool] | None:
        existing = IdempotencyKey.objects.select_related("order").filter(client=client, key=idempotency_key).first()
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
            order = place_order(request=request, client=client)
            IdempotencyKey.objects.create(
                client=client, key=idempotency_key, request_fingerprint=fingerprint, order=order
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
    expired = IdempotencyKey.objects.filter(created_at__lt=cutoff)
    return delete_in_batches(sweep="purge-idempotency-keys", queryset=expired)


def _order_identity(order: Order) -> dict[str, str]:
    return {"orderId": str(order.id), "customerId": order.customer_id, "email": order.email}


_held_orders: ContextVar[dict[uuid.UUID, Order] | None] = ContextVar("held_orders", default=None)


@contextmanager
def hold_orders(*, order_ids: Iterable[uuid.UUID]) -> Iterator[None]:
    """Lock `order_ids`' orders in one query, in pk order, for the services called inside, which then
    change the locked instances (one per order, so each sees the last one's change) rather than lock
    each order again: a consumer's receive of the saga's events. Inside a transaction."""
    orders = {
        order.pk: order for order in Order.objects.select_for_update().filter(pk__in=set(order_ids)).order_by("pk")
    }
    token = _held_orders.set(orders)
    try:
        yield
    finally:
        _held_orders.reset(token)


def _lock(order_id: uuid.UUID) -> Order:
    held = _held_orders.get()
    if held is not None and order_id in held:
        return held[order_id]
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
    """Cancel orders left in PLACED or RESERVED too long (TIMEOUT), oldest first, each in its own
    transaction: an order that moves on meanwhile is left alone, and one that cannot be cancelled (or
    even read) is recorded and skipped (eventbus.sweeps), never stopping the rest.

    With ORDER_SAGA=stepfunctions each step of an order's execution times out and compensates, so an
    order whose execution is running is left to it. The others are cancelled here: an execution that
    never started (its Order Placed is in a DLQ), was stopped, or ended without finishing the order has
    no step left to time out. AWS that cannot be asked stops the sweep until its next run."""
    orchestrated = settings.ORDER_SAGA == "stepfunctions"
    if older_than is None:
        older_than = timedelta(minutes=settings.ORDER_TIMEOUT_MINUTES)
    cutoff = timezone.now() - older_than
    # Only ids are read here: a row the model cannot load fails its own iteration, not this query.
    stuck = list(
        Order.objects.filter(status__in=[Order.Status.PLACED, Order.Status.RESERVED], status_changed_at__lt=cutoff)
        .order_by("status_changed_at", "pk")
        .values_list("pk", flat=True)
    )
    sweep = Sweep("cancel-stuck-orders")
    cancelled = []
    for order_id in stuck:
        # Asked before the row is locked: no lock is held across a call to AWS.
        if orchestrated and execution_running(order_id=order_id):
            continue
        with sweep.item(order_id), transaction.atomic():
            order = _lock(order_id)
            if order.status not in (Order.Status.PLACED, Order.Status.RESERVED) or order.status_changed_at >= cutoff:
                continue
            _cancel(order, reason_code=Order.CancellationReason.TIMEOUT, reason="The order was not completed in time.")
            order.save()
            cancelled.append(order_id)
    return cancelled


# --- API clients and keys -----------------------------------------------------------------------

API_KEY_PREFIX = "sb"


class UnknownApiClient(LookupError):
    pass


class UnknownApiKey(LookupError):
    pass


class ApiClientExists(ValueError):
    pass


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_client(*, name: str, is_staff: bool = False) -> tuple[ApiClient, str]:
    """A client application and its first key. Returns the client and the key's plaintext, which is
    shown once and never stored."""
    try:
        with transaction.atomic():
            client = ApiClient.objects.create(name=name.strip(), is_staff=is_staff)
            _, plaintext = issue_api_key(client=client)
    except IntegrityError as exc:
        raise ApiClientExists(f"A client named {name.strip()!r} exists; issue it another key instead.") from exc
    return client, plaintext


def issue_api_key(*, client: ApiClient, secret: str | None = None) -> tuple[ApiKey, str]:
    """Add a key to an existing client (key rotation: issue, switch, then revoke the old one). Returns
    the key and its plaintext. `secret` lets the local stack keep one key across restarts."""
    prefix = secrets.token_hex(4)
    secret = secret or secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(client=client, prefix=prefix, hashed_secret=_hash_secret(secret))
    return api_key, f"{API_KEY_PREFIX}_{prefix}_{secret}"


def local_stack_key(*, client_name: str, remembered: str | None) -> str:
    """The local stack's key, the same across restarts so that scripts keep working: `remembered` (the
    plaintext the stack kept from its last start) while it is still a live key of the client, else a
    new one, and then the client's other keys, whose plaintext is lost, are revoked. The client, and
    with it its orders and idempotency records, stays."""
    client, _ = ApiClient.objects.get_or_create(name=client_name)
    current = authenticate_api_key(presented=remembered) if remembered else None
    with transaction.atomic():
        if current is None or current.client_id != client.pk:
            current, remembered = issue_api_key(client=client)
        revoke_api_keys(api_key_ids=list(client.keys.exclude(pk=current.pk).values_list("pk", flat=True)))
    return remembered


def find_api_client(*, name: str) -> ApiClient:
    client = ApiClient.objects.filter(name=name.strip()).first()
    if client is None:
        raise UnknownApiClient(f"No API client named {name!r}.")
    return client


def authenticate_api_key(*, presented: str) -> ApiKey | None:
    try:
        marker, prefix, secret = presented.split("_", 2)
    except ValueError:
        return None
    if marker != API_KEY_PREFIX:
        return None
    api_key = ApiKey.objects.select_related("client").filter(prefix=prefix, revoked_at__isnull=True).first()
    if api_key is None or not hmac.compare_digest(api_key.hashed_secret, _hash_secret(secret)):
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > timedelta(minutes=1):
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)  # ApiKey is not evented
    return api_key


def revoke_api_key(*, prefix: str) -> ApiKey:
    """`prefix` as the admin lists it (8 hex digits); the start of the key itself (sb_<prefix>…), or the
    whole key, does as well."""
    marker, _, rest = prefix.strip().partition("_")
    bare = rest.split("_", 1)[0] if marker == API_KEY_PREFIX else prefix.strip()
    api_key = ApiKey.objects.select_related("client").filter(prefix=bare, revoked_at__isnull=True).first()
    if api_key is None:
        raise UnknownApiKey(
            f"No active key with prefix {shortened(bare)!r}: give the 8 characters after 'sb_', "
            "as the admin lists them."
        )
    revoke_api_keys(api_key_ids=[api_key.pk])
    return api_key


def revoke_api_keys(*, api_key_ids: list[int]) -> int:
    return ApiKey.objects.filter(pk__in=api_key_ids, revoked_at__isnull=True).update(revoked_at=timezone.now())
