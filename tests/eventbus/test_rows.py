"""eventbus.rows: hand-built INSERTs store what the ORM would, in the order given, on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from eventbus.models import MetricBucket, OutboxEvent, ProcessedEvent
from eventbus.rows import db_value, insert_new_rows, insert_rows

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]


def outbox_row(n: int) -> dict:
    return {
        "id": uuid.uuid4(),
        "source": "ecommerce.test",
        "detail_type": "Thing Happened",
        "detail": {"n": n, "nested": [1, None, "x"], "text": "naïve"},
        "correlation_id": f"c-{n}",
    }


def processed_row(event_id: uuid.UUID) -> dict:
    return {"handler": "audit.test", "event_id": event_id, "detail_type": "Thing Happened", "envelope_id": "e"}


@pytest.mark.parametrize("count", [1, 3])
def test_rows_are_stored_as_the_orm_stores_them_with_its_defaults(count):
    rows = [outbox_row(n) for n in range(count)]

    assert insert_rows(OutboxEvent, rows) == count

    stored = OutboxEvent.objects.in_bulk([row["id"] for row in rows])
    assert [
        (stored[row["id"]].detail, stored[row["id"]].correlation_id, stored[row["id"]].claimed_until) for row in rows
    ] == [(row["detail"], row["correlation_id"], None) for row in rows]
    assert {(event.status, event.attempts, event.last_error) for event in stored.values()} == {
        (OutboxEvent.Status.PENDING, 0, "")
    }


def test_rows_go_in_in_the_order_given():
    # Callers order their rows by key so that two transactions take unique-index entries in one order.
    event_ids = [uuid.uuid4() for _ in range(6)]

    insert_rows(ProcessedEvent, [processed_row(event_id) for event_id in event_ids])

    assert list(ProcessedEvent.objects.order_by("pk").values_list("event_id", flat=True)) == event_ids


def test_new_rows_are_told_from_those_already_there():
    old, new = uuid.uuid4(), uuid.uuid4()
    insert_rows(ProcessedEvent, [processed_row(old)])

    written = insert_new_rows(
        ProcessedEvent, [processed_row(old), processed_row(new)], conflict=["handler", "event_id"], returning="event_id"
    )

    assert written == {db_value(ProcessedEvent, "event_id", new)}
    assert ProcessedEvent.objects.count() == 2


def test_statements_of_different_shapes_are_kept_apart():
    # Each INSERT's text is kept per shape (row count, conflict, update): a kept text reused for another
    # shape would bind the wrong number of rows or resolve a conflict the other way.
    minute = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    bucket = {"minute": minute, "metric": "handled", "service": "audit", "count": 2}
    key = ["minute", "metric", "service", "bucket"]
    add, replace = {"count": "{table}.{column} + excluded.{column}"}, {"count": "excluded.{column}"}

    insert_rows(MetricBucket, [{**bucket, "bucket": 0}], conflict=key, update=add)
    insert_rows(MetricBucket, [{**bucket, "bucket": 0}], conflict=key)  # skipped, not added
    insert_rows(MetricBucket, [{**bucket, "bucket": 0}, {**bucket, "bucket": 1}], conflict=key, update=add)
    insert_rows(MetricBucket, [{**bucket, "bucket": 1, "count": 5}], conflict=key, update=replace)

    assert dict(MetricBucket.objects.values_list("bucket", "count")) == {0: 4, 1: 5}
