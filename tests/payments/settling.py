"""One event's news settled alone, as a receive of one settles it: the payment, or the exception that
would fail its delivery, raised."""

from __future__ import annotations

import uuid
from decimal import Decimal

from payments import services
from payments.models import Payment


def settle_alone(news: services.OrderNews) -> Payment:
    (result,) = services.settle(news=[news])
    if isinstance(result, Exception):
        raise result
    return result


def remember_order(*, order_id: uuid.UUID, amount: Decimal, currency: str, payment_token: str, email: str) -> Payment:
    return settle_alone(
        services.order_placed(
            order_id=order_id, amount=amount, currency=currency, payment_token=payment_token, email=email
        )
    )


def charge_reserved_order(*, order_id: uuid.UUID) -> Payment:
    return settle_alone(services.stock_reserved(order_id=order_id))


def settle_cancelled_order(*, order_id: uuid.UUID) -> Payment:
    return settle_alone(services.order_cancelled(order_id=order_id))
