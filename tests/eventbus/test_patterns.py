"""The offline EventBridge event-pattern engine, checked row by row against AWS's documented behaviour.

Written independently of eventbus/patterns.py, from:
- the Amazon EventBridge user guide: event patterns, comparison operators, arrays, null values and empty strings;
- aws/event-ruler, the matching library behind EventBridge: its README and its rule compiler (JsonRuleCompiler),
  whose error messages are the "Reason:" AWS returns for an invalid pattern.

Each table groups the rows that pin one documented rule; a comment above it names the rule.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from eventbus.patterns import InvalidEventPattern, matches, validate_pattern

# --- events ------------------------------------------------------------------------------------------------------

METADATA = {
    "eventId": "0b9e7c52-3f7a-4a8e-9d6b-1c2f3e4d5a6b",
    "schemaVersion": 1,
    "occurredAt": "2026-11-24T10:00:00Z",
    "correlationId": "ord-1001",
    "causationId": None,
}


def envelope(detail: Any, *, source: str = "ecommerce.orders", detail_type: str = "Order Placed", **fields: Any):
    """An EventBridge event as a rule sees it; `fields` adds or overrides envelope fields."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-11-24T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
        **fields,
    }


def order(*, detail_type: str = "Order Placed", **data: Any) -> dict:
    """An ecommerce.orders event whose detail.data is a small USD order, with `data` added or overridden."""
    base = {"orderId": "ord-1001", "customerId": "c-1", "currency": "USD", "itemCount": 3, "totalAmount": 129.5}
    return envelope({"metadata": dict(METADATA), "data": {**base, **data}}, detail_type=detail_type)


def on_data(**fields: Any) -> dict:
    """A pattern on detail.data's fields."""
    return {"detail": {"data": fields}}


PAYMENT_FAILED = envelope(
    {"metadata": dict(METADATA), "data": {"paymentId": "pay-7", "orderId": "ord-1001", "reason": "card_declined"}},
    source="ecommerce.payments",
    detail_type="Payment Failed",
)
STOCK_RESERVED = envelope(
    {"metadata": dict(METADATA), "data": {"productId": "prod-3", "quantity": 1}},
    source="ecommerce.inventory",
    detail_type="Stock Reserved",
)
ORDER_ARN = "arn:aws:shopbus:us-east-1:123456789012:order/ord-1001"
CUSTOMER_ARN = "arn:aws:shopbus:us-east-1:123456789012:customer/c-1"


def with_items(*items: dict) -> dict:
    return envelope({"orderId": "ord-1001", "items": list(items)})


# --- $or building blocks -------------------------------------------------------------------------------------------

REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1"]
REGIONS += ["eu-west-2", "eu-central-1", "ap-south-1", "ap-northeast-1", "sa-east-1"]
CHANNELS = ["web", "ios", "android", "pos", "phone", "partner", "kiosk", "email", "chat", "b2b"]


def any_of(field: str, values: list[Any]) -> list[dict]:
    """The branches of an $or, one per value: [{field: [v1]}, {field: [v2]}, ...]."""
    return [{field: [value]} for value in values]


# Two parallel $or of 10 branches: 10 x 10 = 100 combinations, well within EventBridge's limits.
MODERATE_OR = {"$or": any_of("region", REGIONS), "detail": {"$or": any_of("channel", CHANNELS)}}

# Four parallel $or of 10 branches: 10 x 10 x 10 x 10 = 10,000 combinations (the engine allows at most 1,000).
TOO_COMPLEX_OR = {
    "$or": any_of("region", REGIONS),
    "detail": {
        "$or": any_of("channel", CHANNELS),
        "metadata": {"$or": any_of("tenant", [f"tenant-{i}" for i in range(10)])},
        "data": {"$or": any_of("warehouse", [f"wh-{i}" for i in range(10)])},
    },
}


# --- matching tables -----------------------------------------------------------------------------------------------

# Exact values follow JSON rules: strings (case-sensitive, character by character), numbers, true, false and null.
# A value is never equal to a value of another JSON type ("3" is not 3, true is not 1, null is not "").
# Numbers: event-ruler compiles a number in a rule into both a literal and a numeric-equality matcher, so 5 matches
# 5.0 (older EventBridge docs said 300 and 300.0 differ; we follow event-ruler, which EventBridge runs).
# null: "UserID": [null] matches a field whose value is null, not a missing field, and null and "" are not
# interchangeable (user guide, "Matching null values and empty strings").
EXACT = [
    pytest.param({"source": ["ecommerce.orders"]}, order(), True, id="exact-string"),
    pytest.param({"source": ["Ecommerce.Orders"]}, order(), False, id="exact-string-is-case-sensitive"),
    pytest.param(on_data(itemCount=[3]), order(itemCount=3), True, id="exact-integer"),
    pytest.param(on_data(itemCount=[4]), order(itemCount=3), False, id="exact-integer-differs"),
    pytest.param(on_data(totalAmount=[129.5]), order(totalAmount=129.5), True, id="exact-decimal"),
    pytest.param(on_data(quantity=[5]), order(quantity=5.0), True, id="exact-5-matches-5.0"),
    pytest.param(on_data(itemCount=["3"]), order(itemCount=3), False, id="exact-string-3-is-not-number-3"),
    pytest.param(on_data(totalAmount=[129.5]), order(totalAmount="129.5"), False, id="exact-number-is-not-string"),
    pytest.param(on_data(express=[True]), order(express=True), True, id="exact-true"),
    pytest.param(on_data(express=[False]), order(express=False), True, id="exact-false"),
    pytest.param(on_data(express=[True]), order(express="true"), False, id="exact-true-is-not-string-true"),
    pytest.param(on_data(express=[True]), order(express=1), False, id="exact-true-is-not-1"),
    pytest.param(on_data(itemCount=[1]), order(itemCount=True), False, id="exact-1-is-not-true"),
    pytest.param(on_data(couponCode=[None]), order(couponCode=None), True, id="exact-null-matches-null"),
    pytest.param(on_data(couponCode=[None]), order(), False, id="exact-null-does-not-match-missing-field"),
    pytest.param(on_data(couponCode=[None]), order(couponCode=""), False, id="exact-null-is-not-empty-string"),
    pytest.param(on_data(couponCode=[None]), order(couponCode="null"), False, id="exact-null-is-not-string-null"),
    pytest.param(on_data(notes=[""]), order(notes=""), True, id="exact-empty-string"),
]

# Every field named in a pattern must be present in the event, at the same nesting, and match (AND);
# the values in one array are alternatives (OR); event fields the pattern does not name are ignored.
NESTING_AND_OR = [
    pytest.param(
        {
            "source": ["ecommerce.orders"],
            "detail-type": ["Order Placed"],
            "detail": {"data": {"shippingAddress": {"country": ["US"]}}},
        },
        order(shippingAddress={"city": "Seattle", "country": "US"}),
        True,
        id="and-all-fields-match",
    ),
    pytest.param(
        {"source": ["ecommerce.orders"], "detail-type": ["Order Cancelled"]},
        order(),
        False,
        id="and-one-field-fails",
    ),
    pytest.param({"detail-type": ["Order Cancelled", "Order Placed"]}, order(), True, id="or-any-value-in-the-array"),
    pytest.param({"detail-type": ["Order Cancelled", "Order Shipped"]}, order(), False, id="or-none-of-the-values"),
    pytest.param(on_data(giftMessage=["Happy birthday"]), order(), False, id="field-missing-from-event"),
    pytest.param(
        {"detail": {"data": {"shippingAddress": {"city": ["Seattle"]}}}},
        order(shippingAddress="Seattle"),
        False,
        id="pattern-object-vs-event-scalar",
    ),
    pytest.param(
        on_data(shippingAddress=["Seattle"]),
        order(shippingAddress={"city": "Seattle"}),
        False,
        id="pattern-leaf-vs-event-object",
    ),
]

# Prefix matching works on string values only, and is case-sensitive unless wrapped as
# {"prefix": {"equals-ignore-case": ...}} ("Begins with (ignore case)").
PREFIX = [
    pytest.param({"source": [{"prefix": "ecommerce."}]}, order(), True, id="prefix"),
    pytest.param({"source": [{"prefix": "aws."}]}, order(), False, id="prefix-no-match"),
    pytest.param({"source": [{"prefix": "ECOMMERCE."}]}, order(), False, id="prefix-is-case-sensitive"),
    pytest.param(on_data(itemCount=[{"prefix": "3"}]), order(itemCount=3), False, id="prefix-only-on-strings"),
    pytest.param(
        {"detail-type": [{"prefix": {"equals-ignore-case": "ORDER "}}]},
        order(),
        True,
        id="prefix-equals-ignore-case",
    ),
    pytest.param(
        {"detail-type": [{"prefix": {"equals-ignore-case": "payment"}}]},
        order(),
        False,
        id="prefix-equals-ignore-case-no-match",
    ),
]

# Suffix matching works on string values only, and is case-sensitive unless wrapped as
# {"suffix": {"equals-ignore-case": ...}} ("Ends with (ignore case)").
SUFFIX = [
    pytest.param(on_data(invoiceFile=[{"suffix": ".pdf"}]), order(invoiceFile="ord-1001.pdf"), True, id="suffix"),
    pytest.param(
        on_data(invoiceFile=[{"suffix": ".pdf"}]), order(invoiceFile="ord-1001.png"), False, id="suffix-no-match"
    ),
    pytest.param(
        on_data(invoiceFile=[{"suffix": ".pdf"}]),
        order(invoiceFile="ord-1001.PDF"),
        False,
        id="suffix-is-case-sensitive",
    ),
    pytest.param(
        on_data(invoiceFile=[{"suffix": {"equals-ignore-case": ".pdf"}}]),
        order(invoiceFile="ord-1001.PDF"),
        True,
        id="suffix-equals-ignore-case",
    ),
    pytest.param(
        on_data(invoiceFile=[{"suffix": {"equals-ignore-case": ".pdf"}}]),
        order(invoiceFile="ord-1001.png"),
        False,
        id="suffix-equals-ignore-case-no-match",
    ),
]

# Anything-but matches any value except those given: a single string or number, a list of only strings or only
# numbers, or one {"prefix"}, {"suffix"}, {"wildcard"} or {"equals-ignore-case"} expression. It matches a present
# value only, never a missing field (event-ruler matches values the event has); a null value counts as a value
# (AWS matches {"anything-but": [...]} against null, reported in localstack/localstack#9711).
ANYTHING_BUT = [
    pytest.param({"detail-type": [{"anything-but": "Order Cancelled"}]}, order(), True, id="anything-but-string"),
    pytest.param(
        {"detail-type": [{"anything-but": "Order Placed"}]}, order(), False, id="anything-but-string-excluded"
    ),
    pytest.param(on_data(itemCount=[{"anything-but": 0}]), order(itemCount=3), True, id="anything-but-number"),
    pytest.param(
        on_data(itemCount=[{"anything-but": 3}]), order(itemCount=3), False, id="anything-but-number-excluded"
    ),
    pytest.param(
        {"detail-type": [{"anything-but": ["Order Cancelled", "Order Refunded"]}]},
        order(),
        True,
        id="anything-but-string-list",
    ),
    pytest.param(
        {"detail-type": [{"anything-but": ["Order Cancelled", "Order Placed"]}]},
        order(),
        False,
        id="anything-but-string-list-excluded",
    ),
    pytest.param(
        on_data(itemCount=[{"anything-but": [1, 2, 3]}]), order(itemCount=4), True, id="anything-but-number-list"
    ),
    pytest.param(
        on_data(itemCount=[{"anything-but": [1, 2, 3]}]),
        order(itemCount=3),
        False,
        id="anything-but-number-list-excluded",
    ),
    pytest.param({"source": [{"anything-but": {"prefix": "aws."}}]}, order(), True, id="anything-but-prefix"),
    pytest.param(
        {"source": [{"anything-but": {"prefix": "ecommerce."}}]}, order(), False, id="anything-but-prefix-excluded"
    ),
    pytest.param(
        on_data(customerEmail=[{"anything-but": {"suffix": "@example.com"}}]),
        order(customerEmail="ann@shop.test"),
        True,
        id="anything-but-suffix",
    ),
    pytest.param(
        on_data(customerEmail=[{"anything-but": {"suffix": "@example.com"}}]),
        order(customerEmail="bob@example.com"),
        False,
        id="anything-but-suffix-excluded",
    ),
    pytest.param(
        {"detail-type": [{"anything-but": {"wildcard": "*Cancel*"}}]}, order(), True, id="anything-but-wildcard"
    ),
    pytest.param(
        {"detail-type": [{"anything-but": {"wildcard": "Order *"}}]},
        order(),
        False,
        id="anything-but-wildcard-excluded",
    ),
    pytest.param(
        {"detail-type": [{"anything-but": {"equals-ignore-case": "order cancelled"}}]},
        order(),
        True,
        id="anything-but-equals-ignore-case",
    ),
    pytest.param(
        {"detail-type": [{"anything-but": {"equals-ignore-case": "ORDER PLACED"}}]},
        order(),
        False,
        id="anything-but-equals-ignore-case-excluded",
    ),
    pytest.param(on_data(couponCode=[{"anything-but": "SPRING"}]), order(), False, id="anything-but-needs-the-field"),
    pytest.param(
        on_data(couponCode=[{"anything-but": ["SPRING"]}]),
        order(couponCode=None),
        True,
        id="anything-but-matches-null-value",
    ),
]

# Numeric matching compares JSON numbers only: one comparison (<, <=, =, >, >=) or a range of a lower and an upper
# bound. Strings that look like numbers, booleans and null never match.
NUMERIC = [
    pytest.param(on_data(itemCount=[{"numeric": ["<", 10]}]), order(itemCount=3), True, id="numeric-lt"),
    pytest.param(on_data(itemCount=[{"numeric": ["<", 3]}]), order(itemCount=3), False, id="numeric-lt-boundary"),
    pytest.param(on_data(itemCount=[{"numeric": ["<=", 3]}]), order(itemCount=3), True, id="numeric-le-boundary"),
    pytest.param(on_data(itemCount=[{"numeric": ["=", 3]}]), order(itemCount=3), True, id="numeric-eq"),
    pytest.param(on_data(itemCount=[{"numeric": ["=", 3]}]), order(itemCount=3.0), True, id="numeric-eq-3.0"),
    pytest.param(on_data(itemCount=[{"numeric": [">", 3]}]), order(itemCount=3), False, id="numeric-gt-boundary"),
    pytest.param(on_data(itemCount=[{"numeric": [">=", 3]}]), order(itemCount=3), True, id="numeric-ge-boundary"),
    pytest.param(on_data(itemCount=[{"numeric": [">", 0, "<=", 5]}]), order(itemCount=5), True, id="range-top"),
    pytest.param(
        on_data(itemCount=[{"numeric": [">", 0, "<=", 5]}]), order(itemCount=0), False, id="range-open-bottom"
    ),
    pytest.param(
        on_data(totalAmount=[{"numeric": [">=", 100, "<", 1000]}]),
        order(totalAmount=999.99),
        True,
        id="range-decimal-inside",
    ),
    pytest.param(
        on_data(totalAmount=[{"numeric": [">=", 100, "<", 1000]}]),
        order(totalAmount=1000),
        False,
        id="range-open-top",
    ),
    pytest.param(on_data(balance=[{"numeric": [">", -10, "<", 0]}]), order(balance=-2.5), True, id="range-negative"),
    pytest.param(on_data(itemCount=[{"numeric": [">", 0]}]), order(itemCount="5"), False, id="numeric-not-on-strings"),
    pytest.param(on_data(express=[{"numeric": [">", 0]}]), order(express=True), False, id="numeric-not-on-booleans"),
]

# Exists matching tests the presence or absence of a field, and works on leaf nodes only: an object-valued field
# is not a leaf, so {"exists": true} does not match it and {"exists": false} does (user guide, "Exists matching").
EXISTS = [
    pytest.param(on_data(couponCode=[{"exists": True}]), order(couponCode="SPRING"), True, id="exists-true"),
    pytest.param(on_data(couponCode=[{"exists": True}]), order(), False, id="exists-true-absent"),
    pytest.param(on_data(couponCode=[{"exists": False}]), order(), True, id="exists-false-absent"),
    pytest.param(on_data(couponCode=[{"exists": False}]), order(couponCode="SPRING"), False, id="exists-false-present"),
    pytest.param(on_data(notes=[{"exists": True}]), order(notes=""), True, id="exists-true-empty-string"),
    pytest.param(
        {"detail": {"refund": {"reason": [{"exists": False}]}}}, order(), True, id="exists-false-parent-absent"
    ),
    pytest.param(
        on_data(shippingAddress=[{"exists": True}]),
        order(shippingAddress={"city": "Seattle"}),
        False,
        id="exists-true-not-on-object",
    ),
    pytest.param(
        on_data(shippingAddress=[{"exists": False}]),
        order(shippingAddress={"city": "Seattle"}),
        True,
        id="exists-false-on-object",
    ),
]

# IP address matching: {"cidr": ...} matches IPv4 and IPv6 addresses inside the block.
CIDR = [
    pytest.param(on_data(clientIp=[{"cidr": "10.0.0.0/24"}]), order(clientIp="10.0.0.33"), True, id="cidr-ipv4"),
    pytest.param(
        on_data(clientIp=[{"cidr": "10.0.0.0/24"}]), order(clientIp="10.0.1.33"), False, id="cidr-ipv4-outside"
    ),
    pytest.param(
        on_data(clientIp=[{"cidr": "2001:db8::/32"}]),
        order(clientIp="2001:db8:85a3::8a2e:370:7334"),
        True,
        id="cidr-ipv6",
    ),
    pytest.param(
        on_data(clientIp=[{"cidr": "2001:db8::/32"}]), order(clientIp="2001:db9::1"), False, id="cidr-ipv6-outside"
    ),
    pytest.param(
        on_data(clientIp=[{"cidr": "10.0.0.0/24"}]), order(clientIp="unknown"), False, id="cidr-not-an-address"
    ),
]

# Equals-ignore-case: the whole string, compared without regard to case; strings only.
EQUALS_IGNORE_CASE = [
    pytest.param({"detail-type": [{"equals-ignore-case": "ORDER PLACED"}]}, order(), True, id="ignore-case"),
    pytest.param(
        {"detail-type": [{"equals-ignore-case": "order place"}]}, order(), False, id="ignore-case-whole-string"
    ),
    pytest.param(
        on_data(itemCount=[{"equals-ignore-case": "3"}]), order(itemCount=3), False, id="ignore-case-only-strings"
    ),
]

# Wildcard: each * stands for any run of characters (including none); without a * the pattern is an exact match.
# Case-sensitive; strings only.
WILDCARD = [
    pytest.param({"detail-type": [{"wildcard": "Order *"}]}, order(), True, id="wildcard-one-star"),
    pytest.param({"detail-type": [{"wildcard": "Payment *"}]}, order(), False, id="wildcard-one-star-no-match"),
    pytest.param(
        on_data(invoiceUrl=[{"wildcard": "https://*.shopbus.test/invoices/*.pdf"}]),
        order(invoiceUrl="https://eu.shopbus.test/invoices/ord-1001.pdf"),
        True,
        id="wildcard-several-stars",
    ),
    pytest.param(
        on_data(invoiceUrl=[{"wildcard": "https://*.shopbus.test/invoices/*.pdf"}]),
        order(invoiceUrl="https://eu.shopbus.test/invoices/ord-1001.html"),
        False,
        id="wildcard-several-stars-no-match",
    ),
    pytest.param({"detail-type": [{"wildcard": "Order Placed*"}]}, order(), True, id="wildcard-star-matches-none"),
    pytest.param({"detail-type": [{"wildcard": "Order Placed"}]}, order(), True, id="wildcard-without-star-exact"),
    pytest.param({"detail-type": [{"wildcard": "Order"}]}, order(), False, id="wildcard-without-star-not-prefix"),
    pytest.param(on_data(itemCount=[{"wildcard": "*"}]), order(itemCount=3), False, id="wildcard-only-strings"),
]

# $or: the event matches if any object in the $or array matches; $or may sit at the top level or inside an object,
# sits beside other fields (which still must match), and may nest.
NESTED_OR_PATTERN = {
    "source": ["ecommerce.orders"],
    "detail": {"data": {"$or": [{"currency": ["EUR"]}, {"totalAmount": [{"numeric": [">", 1000]}]}]}},
}
OR_IN_OR_PATTERN = {
    "$or": [
        {"detail-type": ["Order Cancelled"]},
        {
            "detail-type": ["Order Placed"],
            "$or": [
                {"detail": {"data": {"express": [True]}}},
                {"detail": {"data": {"itemCount": [{"numeric": [">=", 10]}]}}},
            ],
        },
    ]
}
TOP_LEVEL_OR_PATTERN = {"$or": [{"source": ["ecommerce.orders"]}, {"detail-type": ["Payment Failed"]}]}
OR = [
    pytest.param(TOP_LEVEL_OR_PATTERN, order(), True, id="or-top-level-first-branch"),
    pytest.param(TOP_LEVEL_OR_PATTERN, PAYMENT_FAILED, True, id="or-top-level-second-branch"),
    pytest.param(TOP_LEVEL_OR_PATTERN, STOCK_RESERVED, False, id="or-top-level-no-branch"),
    pytest.param(NESTED_OR_PATTERN, order(currency="EUR"), True, id="or-nested-first-branch"),
    pytest.param(NESTED_OR_PATTERN, order(totalAmount=2049.48), True, id="or-nested-second-branch"),
    pytest.param(NESTED_OR_PATTERN, order(totalAmount=129.5), False, id="or-nested-no-branch"),
    pytest.param(OR_IN_OR_PATTERN, order(express=True), True, id="or-in-or-inner-branch"),
    pytest.param(OR_IN_OR_PATTERN, order(express=False, itemCount=3), False, id="or-in-or-no-inner-branch"),
    pytest.param(MODERATE_OR, envelope({"channel": "web"}, region="eu-west-1"), True, id="or-parallel-100-match"),
    pytest.param(MODERATE_OR, envelope({"channel": "fax"}), False, id="or-parallel-100-no-match"),
]

# Arrays in events: a leaf pattern matches if any element of the event array matches (the pattern array and the
# event array intersect). Arrays of objects are "crushed out": a sub-pattern on the array's field is matched against
# the objects' fields, at any array depth. Array consistency: event-ruler's rulesForJSONEvent, which EventBridge
# uses, refuses a match in which two fields come from objects in different elements of the same array, so all the
# fields of one sub-pattern must match within the SAME element.
ARRAYS = [
    pytest.param(
        {"resources": [ORDER_ARN]}, envelope({}, resources=[CUSTOMER_ARN, ORDER_ARN]), True, id="array-intersects"
    ),
    pytest.param(
        {"resources": [ORDER_ARN, "arn:aws:shopbus:us-east-1:123456789012:order/ord-2"]},
        envelope({}, resources=[CUSTOMER_ARN]),
        False,
        id="array-no-intersection",
    ),
    pytest.param(on_data(tags=[{"prefix": "vip"}]), order(tags=["new", "vip-gold"]), True, id="array-any-prefix"),
    pytest.param(on_data(quantities=[{"numeric": [">", 4]}]), order(quantities=[1, 5]), True, id="array-any-numeric"),
    pytest.param(
        {"detail": {"items": {"productId": ["prod-3"]}}},
        with_items({"productId": "prod-1", "quantity": 2}, {"productId": "prod-3", "quantity": 1}),
        True,
        id="array-of-objects",
    ),
    pytest.param(
        {"detail": {"items": {"productId": ["prod-3"]}}},
        with_items({"productId": "prod-1", "quantity": 2}, {"productId": "prod-2", "quantity": 1}),
        False,
        id="array-of-objects-no-element",
    ),
    pytest.param(
        {"detail": {"items": {"productId": ["prod-3"], "quantity": [2]}}},
        with_items({"productId": "prod-1", "quantity": 1}, {"productId": "prod-3", "quantity": 2}),
        True,
        id="array-consistent-same-element",
    ),
    pytest.param(
        # prod-3 is in one element and quantity 2 in another: no single element has both (array consistency).
        {"detail": {"items": {"productId": ["prod-3"], "quantity": [2]}}},
        with_items({"productId": "prod-3", "quantity": 1}, {"productId": "prod-1", "quantity": 2}),
        False,
        id="array-consistent-different-elements",
    ),
    pytest.param(
        {"detail": {"shipments": {"carrier": ["UPS"]}}},
        envelope({"shipments": [[{"carrier": "DHL"}], [{"carrier": "UPS"}]]}),
        True,
        id="array-of-arrays-of-objects",
    ),
]

# Keys containing dots: a pattern key "shipping.city" matches an event object whose key is literally
# "shipping.city" (event-ruler README, "JSON keys with dots").
DOTTED_KEYS = [
    pytest.param(
        {"detail": {"shipping.city": ["Seattle"]}},
        envelope({"shipping.city": "Seattle"}),
        True,
        id="dotted-key",
    ),
    pytest.param(
        {"detail": {"shipping.city": ["Seattle"]}},
        envelope({"shipping.city": "Portland"}),
        False,
        id="dotted-key-other-value",
    ),
]

# Both the pattern and the event may be given as JSON text, as PutRule and PutEvents take them.
JSON_TEXT = [
    pytest.param(
        json.dumps({"source": ["ecommerce.orders"], "detail-type": ["Order Placed"]}),
        order(),
        True,
        id="json-text-pattern",
    ),
    pytest.param({"source": ["ecommerce.payments"]}, json.dumps(PAYMENT_FAILED), True, id="json-text-event"),
    pytest.param(
        '{"detail": {"data": {"totalAmount": [{"numeric": ["=", 3.018e2]}]}}}',
        json.dumps(order(totalAmount=301.8)),
        True,
        id="json-text-both-exponent-notation",
    ),
]

MATCH_CASES = [
    *EXACT,
    *NESTING_AND_OR,
    *PREFIX,
    *SUFFIX,
    *ANYTHING_BUT,
    *NUMERIC,
    *EXISTS,
    *CIDR,
    *EQUALS_IGNORE_CASE,
    *WILDCARD,
    *OR,
    *ARRAYS,
    *DOTTED_KEYS,
    *JSON_TEXT,
]


@pytest.mark.parametrize(("pattern", "event", "expected"), MATCH_CASES)
def test_matches(pattern, event, expected):
    assert validate_pattern(pattern) is None
    assert matches(pattern, event) is expected


def test_matches_leaves_its_arguments_alone():
    pattern = {"source": ["ecommerce.orders"], "detail": {"data": {"$or": [{"currency": ["EUR"]}, {"x": [1]}]}}}
    event = order(currency="EUR")
    before = copy.deepcopy((pattern, event))

    assert matches(pattern, event) is True
    assert (pattern, event) == before


# --- rejections ----------------------------------------------------------------------------------------------------

# Patterns AWS refuses with InvalidEventPatternException. Each row carries the words of which at least one must
# appear (case-insensitively) in the reason; see test_rejection_reason_says_what_is_wrong.
NUMERIC_WORDS = ("numeric",)
REJECTIONS = [
    # "Empty arrays are not allowed" / "Empty objects are not allowed".
    pytest.param({"source": []}, ("empty",), id="empty-array"),
    pytest.param({"source": ["ecommerce.orders"], "detail": {}}, ("empty",), id="empty-object-nested"),
    pytest.param({}, ("empty",), id="empty-pattern"),
    # An unknown operator: "Unrecognized match type regex"; an operator object has exactly one key.
    pytest.param({"source": [{"regex": "x"}]}, ("regex",), id="unknown-operator"),
    pytest.param(
        {"source": [{"prefix": "ecommerce.", "suffix": ".orders"}]},
        ("one", "key", "prefix", "suffix", "operator"),
        id="operator-with-two-keys",
    ),
    # The pattern is a JSON object: "Filter is not an object".
    pytest.param([{"source": ["ecommerce.orders"]}], ("object",), id="pattern-is-a-list"),
    pytest.param('"ecommerce.orders"', ("object",), id="pattern-is-json-string-text"),
    # A leaf value is an array: '"source" must be an object or an array'; array elements are scalars or operators.
    pytest.param({"source": "ecommerce.orders"}, ("array", "list"), id="leaf-is-a-string"),
    pytest.param(on_data(itemCount=3), ("array", "list"), id="leaf-is-a-number"),
    # Numeric: [comparator, number] or [lower comparator, number, upper comparator, number], lower below upper.
    pytest.param(on_data(itemCount=[{"numeric": [">", "5"]}]), NUMERIC_WORDS, id="numeric-non-number"),
    pytest.param(on_data(itemCount=[{"numeric": ["!=", 5]}]), (*NUMERIC_WORDS, "!="), id="numeric-bad-comparator"),
    pytest.param(
        on_data(itemCount=[{"numeric": [">", 10, "<", 5]}]),
        (*NUMERIC_WORDS, "range", "bound", "bottom"),
        id="numeric-lower-above-upper",
    ),
    pytest.param(
        on_data(itemCount=[{"numeric": [">", 0, "<", 10, "<", 20]}]),
        (*NUMERIC_WORDS, "too many", "comparison"),
        id="numeric-three-comparisons",
    ),
    # Malformed CIDR blocks.
    pytest.param(
        on_data(clientIp=[{"cidr": "10.0.0.0/33"}]), ("cidr", "mask", "prefix length", "ipv4"), id="cidr-mask-33"
    ),
    pytest.param(on_data(clientIp=[{"cidr": "not-an-ip"}]), ("cidr", "ip address", "not-an-ip"), id="cidr-not-an-ip"),
    # "exists match pattern must be either true or false".
    pytest.param(on_data(couponCode=[{"exists": "true"}]), ("exists",), id="exists-non-boolean"),
    # Anything-but: a string, a number, a non-empty list of only strings or only numbers, or a supported expression.
    pytest.param(
        {"detail-type": [{"anything-but": []}]}, ("anything-but", "anything but", "empty"), id="anything-but-empty"
    ),
    pytest.param(
        {"detail-type": [{"anything-but": ["Order Placed", 3]}]},
        ("anything-but", "anything but", "mixed", "type"),
        id="anything-but-mixed-list",
    ),
    pytest.param(
        on_data(itemCount=[{"anything-but": {"numeric": [">", 1]}}]),
        ("anything-but", "anything but", "numeric"),
        id="anything-but-unsupported-expression",
    ),
    # String operators take strings: "prefix match pattern must be a string".
    pytest.param({"source": [{"prefix": 5}]}, ("prefix",), id="prefix-non-string"),
    pytest.param({"source": [{"equals-ignore-case": 5}]}, ("equals-ignore-case",), id="equals-ignore-case-non-string"),
    # $or takes a list of objects, and the combinations it expands to are capped (the engine: at most 1,000).
    pytest.param({"$or": "ecommerce.orders"}, ("$or",), id="or-not-a-list"),
    pytest.param({"$or": ["ecommerce.orders", "ecommerce.payments"]}, ("$or",), id="or-list-of-strings"),
    pytest.param({"$or": []}, ("$or", "empty"), id="or-empty-list"),
    pytest.param(TOO_COMPLEX_OR, ("$or", "complex", "combination"), id="or-too-complex-10000-combinations"),
    # Pattern text must be JSON.
    pytest.param('{"source": ["ecommerce.orders"]', ("json", "expecting", "parse", "decode"), id="invalid-json-text"),
]


@pytest.mark.parametrize(("pattern", "keywords"), REJECTIONS)
def test_invalid_pattern_is_rejected(pattern, keywords):
    with pytest.raises(InvalidEventPattern):
        validate_pattern(pattern)
    with pytest.raises(InvalidEventPattern):
        matches(pattern, order())


@pytest.mark.parametrize(("pattern", "keywords"), REJECTIONS)
def test_rejection_reason_says_what_is_wrong(pattern, keywords):
    with pytest.raises(InvalidEventPattern) as raised:
        validate_pattern(pattern)
    reason = str(raised.value)
    assert reason.strip(), "the reason is empty"
    assert any(keyword in reason.lower() for keyword in keywords), f"{reason!r} mentions none of {keywords}"


SOME_EVENT = {
    "version": "0",
    "id": "1",
    "source": "test-source",
    "detail-type": "test-detail-type",
    "account": "123456789012",
    "region": "us-east-2",
    "time": "2022-07-13T13:48:01Z",
    "resources": [],
}


@pytest.mark.parametrize(
    "operator, excluded, allowed",
    [("prefix", ["init-1", "test-1"], "post-init"), ("suffix", ["a.png", "a.jpg"], "a.txt")],
)
def test_anything_but_takes_a_list_of_prefixes_or_suffixes(operator, excluded, allowed):
    # As AWS accepts (LocalStack's AWS-validated templates content_anything_prefix_list / _suffix_list).
    lists = {"prefix": ["init", "test"], "suffix": [".png", ".jpg"]}
    pattern = {"detail": {"value": [{"anything-but": {operator: lists[operator]}}]}}
    validate_pattern(pattern)
    assert matches(pattern, {**SOME_EVENT, "detail": {"value": allowed}})
    for value in excluded:
        assert not matches(pattern, {**SOME_EVENT, "detail": {"value": value}})
    with pytest.raises(InvalidEventPattern):
        validate_pattern({"detail": {"value": [{"anything-but": {operator: []}}]}})


def test_anything_but_against_an_event_array_matches_when_any_element_is_not_excluded():
    # Each element of an event array is a value of its own, and a field matches when any value does.
    pattern = {"detail": {"tags": [{"anything-but": "vip"}]}}
    assert matches(pattern, {**SOME_EVENT, "detail": {"tags": ["vip", "new"]}})
    assert not matches(pattern, {**SOME_EVENT, "detail": {"tags": ["vip"]}})
