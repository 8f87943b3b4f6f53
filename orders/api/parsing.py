"""Turn request JSON into service requests, with a field error for every wrongly typed value."""

from __future__ import annotations

from typing import Any

from ..services import ADDRESS_FIELDS, OrderItem, PlaceOrderRequest


class FieldErrors(ValueError):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(str(errors))
        self.errors = errors


def parse_place_order_request(body: Any) -> PlaceOrderRequest:
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict):
        raise FieldErrors({"body": ["Expected a JSON object."]})

    def text(value: Any, field: str, *, required: bool = True) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            errors.setdefault(field, []).append("This field is required." if value is None else "Must be a string.")
            return ""
        return value

    customer_id = text(body.get("customerId"), "customerId")
    email = text(body.get("email"), "email")
    payment_token = text(body.get("paymentToken"), "paymentToken", required=False) or "tok_visa"

    items: list[OrderItem] = []
    raw_items = body.get("items")
    if not isinstance(raw_items, list):
        errors["items"] = ["This field is required." if raw_items is None else "Must be a list."]
        raw_items = []
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            errors[f"items[{index}]"] = ["Must be an object with productId and quantity."]
            continue
        if "unitPrice" in raw or "price" in raw:
            errors.setdefault(f"items[{index}]", []).append("Prices come from the catalogue and cannot be set.")
        product_id = text(raw.get("productId"), f"items[{index}].productId")
        quantity = raw.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            errors[f"items[{index}].quantity"] = ["Must be a whole number."]
            quantity = 1
        items.append(OrderItem(product_id=product_id, quantity=quantity))

    address = body.get("shippingAddress")
    shipping_address: dict[str, str] = {}
    if not isinstance(address, dict):
        errors["shippingAddress"] = ["This field is required." if address is None else "Must be an object."]
    else:
        for field in ADDRESS_FIELDS:
            shipping_address[field] = text(address.get(field), f"shippingAddress.{field}")

    if "totalAmount" in body:
        errors["totalAmount"] = ["The total is computed from catalogue prices and cannot be set."]
    if errors:
        raise FieldErrors(errors)
    return PlaceOrderRequest(
        customer_id=customer_id,
        email=email,
        items=items,
        shipping_address=shipping_address,
        payment_token=payment_token,
    )


def parse_cancel_request(body: Any) -> str:
    if not isinstance(body, dict):
        raise FieldErrors({"body": ["Expected a JSON object."]})
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise FieldErrors({"reason": ["Say why the order is cancelled."]})
    if len(reason) > 500:
        raise FieldErrors({"reason": ["Must be at most 500 characters."]})
    return reason.strip()
