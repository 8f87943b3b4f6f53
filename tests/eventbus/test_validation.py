from __future__ import annotations

import json
import uuid

import pytest
from django.db import transaction

from eventbus import event_types
from eventbus.events import MalformedEvent, parse_envelope
from eventbus.models import OutboxEvent
from eventbus.validation import SCHEMA_DIR, SchemaViolation, supported_versions, validate_detail
from inventory.models import StockItem
from tests.events import detail, envelope, order_placed_data
from tests.factories import ProductFactory

LOW_STOCK = {"productId": "prod-1", "productName": "Laptop", "available": 9, "threshold": 10}


@pytest.mark.parametrize("event_type", event_types.ALL_EVENT_TYPES, ids=str)
def test_every_event_type_has_a_schema(event_type):
    assert supported_versions(event_type) == [1]


def test_a_valid_detail_passes():
    validate_detail(event_types.LOW_STOCK_ALERT, detail(LOW_STOCK))


@pytest.mark.parametrize(
    ("data", "metadata", "complaint"),
    [
        ({**LOW_STOCK, "available": "9"}, {}, 'data.available: "9" is not of type "integer"'),
        ({k: v for k, v in LOW_STOCK.items() if k != "threshold"}, {}, '"threshold" is a required property'),
        (LOW_STOCK, {"eventId": "not-a-uuid"}, "metadata.eventId"),
        (LOW_STOCK, {"schemaVersion": 7}, "schemaVersion 7 is not supported"),
    ],
)
def test_schema_violations_are_rejected_with_the_reason(data, metadata, complaint):
    with pytest.raises(SchemaViolation, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        validate_detail(event_types.LOW_STOCK_ALERT, detail(data, **metadata))


def test_money_must_be_a_decimal_string_not_a_float():
    data = {"orderId": str(uuid.uuid4()), "paymentId": str(uuid.uuid4()), "amount": 1059.97, "currency": "USD"}
    with pytest.raises(SchemaViolation, match="data.amount"):
        validate_detail(event_types.PAYMENT_PROCESSED, detail(data))


def test_a_new_optional_field_keeps_the_same_version():
    validate_detail(event_types.LOW_STOCK_ALERT, detail({**LOW_STOCK, "warehouse": "SEA-1"}))


def test_an_invalid_event_is_refused_when_recorded_and_nothing_is_written(db):
    item = StockItem.objects.get(product=ProductFactory())
    item.on_hand = 1
    item.record_event(event_types.LOW_STOCK_ALERT, {**LOW_STOCK, "available": -1}, correlation_id="prod-1")
    with pytest.raises(SchemaViolation), transaction.atomic():
        item.save()
    item.refresh_from_db()
    assert item.on_hand == 100
    assert not OutboxEvent.objects.exists()


def test_the_consumer_rejects_a_detail_sent_as_a_string():
    with pytest.raises(MalformedEvent, match="detail must be an object"):
        parse_envelope(envelope(event_types.LOW_STOCK_ALERT, detail_value=json.dumps(detail(LOW_STOCK))))


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("{not json", "body is not JSON"),
        ('["a list"]', "not an EventBridge envelope"),
        ('{"source": "ecommerce.inventory"}', "envelope lacks detail, detail-type"),
        (json.dumps({"source": "ecommerce.x", "detail-type": "Y", "detail": {}}), "is not a shopbus event type"),
    ],
)
def test_the_consumer_rejects_malformed_bodies(body, complaint):
    with pytest.raises(MalformedEvent, match=complaint):
        parse_envelope(body)


def test_the_consumer_reads_the_producer_s_event_id_not_the_envelope_id():
    sent = detail(LOW_STOCK)
    event = parse_envelope(envelope(event_types.LOW_STOCK_ALERT, detail_value=sent, id="e-1"))
    assert str(event.event_id) == sent["metadata"]["eventId"]
    assert event.envelope_id == "e-1"


@pytest.mark.parametrize(
    ("event_type", "codes"),
    [
        (event_types.ORDER_CANCELLED, event_types.CancellationReason),
        (event_types.RESERVATION_FAILED, event_types.ReservationFailure),
        (event_types.STOCK_UPDATED, event_types.StockChange),
        (event_types.PAYMENT_FAILED, event_types.PaymentFailure),
    ],
    ids=str,
)
def test_the_reason_code_enums_are_the_values_the_schemas_admit(event_type, codes):
    schema = json.loads((SCHEMA_DIR / f"{event_type.schema_name}.v1.json").read_text())
    assert schema["properties"]["reasonCode"]["enum"] == [code.value for code in codes]


def test_an_address_django_accepts_is_a_valid_email_in_an_event():
    # Internationalised domains pass the API's (Django's) check, so the event must carry them too.
    data = {**order_placed_data(uuid.uuid4()), "email": "kunde@exämple.de"}
    validate_detail(event_types.ORDER_PLACED, detail(data))
    with pytest.raises(SchemaViolation, match="data.email"):
        validate_detail(event_types.ORDER_PLACED, detail({**data, "email": "not an address"}))


def test_a_value_json_cannot_carry_is_a_schema_violation_not_a_crash():
    data = {**order_placed_data(uuid.uuid4()), "orderId": uuid.uuid4()}  # the UUID, not its string
    with pytest.raises(SchemaViolation, match="not JSON data"):
        validate_detail(event_types.ORDER_PLACED, detail(data))
