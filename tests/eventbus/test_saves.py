"""An evented model's save of an existing row: the UPDATE by primary key whose text EventedModel keeps
rather than compiling it through a QuerySet each time (eventbus.models). It must store exactly what
Django's own UPDATE stores, and leave to Django whatever it does not handle itself."""

from __future__ import annotations

import inspect
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, models, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from eventbus.event_types import STOCK_UPDATED
from eventbus.models import EventedModel, OutboxEvent
from inventory.models import StockItem
from inventory.services import restock
from payments.models import Payment
from tests.factories import StockItemFactory

pytestmark = pytest.mark.django_db


def stored_row(model: type[models.Model], pk) -> dict:
    """The row as the database holds it, read without the ORM's conversions."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM {quote(model._meta.db_table)} WHERE {quote(model._meta.pk.column)} = %s",
            [model._meta.pk.get_db_prep_value(pk, connection)],
        )
        names = [column[0] for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


CHARGED_AT = datetime(2026, 11, 27, 18, 30, 15, 123456, tzinfo=UTC)


def charged(payment: Payment) -> None:
    payment.status = Payment.Status.CHARGED
    payment.amount = Decimal("1234.50")
    payment.currency = "EUR"
    payment.customer_email = "ada@example.com"
    payment.stock_reserved = True
    payment.gateway_reference = "ch_123"
    payment.failure_reason = ""
    payment.charged_at = CHARGED_AT
    payment.charge_attempts = 2


def emptied(payment: Payment) -> None:
    payment.amount = None
    payment.charged_at = None


@pytest.mark.parametrize("change", [charged, emptied])
def test_a_save_stores_each_column_as_djangos_own_update_does(on_each_database, change):
    ours, djangos = Payment.objects.create(order_id=uuid.uuid4()), Payment.objects.create(order_id=uuid.uuid4())
    for payment in (ours, djangos):
        charged(payment)
        payment.save()
        change(payment)
    djangos.created_at = ours.created_at

    ours.save()
    # QuerySet.update() compiles the UPDATE through Django's query compiler: the reference.
    values = {field.attname: getattr(djangos, field.attname) for field in Payment._meta.concrete_fields}
    values.pop("id")
    values["updated_at"] = ours.updated_at
    Payment.objects.filter(pk=djangos.pk).update(**values)

    ours_stored, djangos_stored = stored_row(Payment, ours.pk), stored_row(Payment, djangos.pk)
    for row in (ours_stored, djangos_stored):
        del row["id"], row["order_id"]
    assert ours_stored == djangos_stored
    ours.refresh_from_db()
    assert (ours.amount, ours.charged_at, ours.status) == (
        (Decimal("1234.50"), CHARGED_AT, Payment.Status.CHARGED) if change is charged else (None, None, "CHARGED")
    )


def test_a_save_is_one_update_by_primary_key_of_the_columns_saved(on_each_database):
    stock = StockItemFactory(on_hand=10)
    stock.reserved = 3

    with CaptureQueriesContext(connection) as queries:
        stock.save(update_fields=["reserved", "updated_at"])

    (update,) = [query["sql"] for query in queries.captured_queries]
    quote = connection.ops.quote_name
    assert update.startswith(f"UPDATE {quote(StockItem._meta.db_table)} SET {quote('reserved')} = ")
    assert update.count(" = ") == 3  # two columns and the primary key
    stock.refresh_from_db()
    assert stock.reserved == 3


def test_a_save_still_writes_the_events_recorded_on_the_model():
    stock = StockItemFactory(on_hand=10)
    OutboxEvent.objects.all().delete()

    restock(product_ids=[stock.product_id], quantity=2)  # an update_fields save that records Stock Updated

    (event,) = OutboxEvent.objects.all()
    assert (event.detail_type, event.detail["data"]["onHand"]) == (STOCK_UPDATED.detail_type, 12)
    stock.refresh_from_db()
    assert stock.on_hand == 12


def test_an_expression_takes_djangos_own_path(on_each_database):
    stock = StockItemFactory(on_hand=10, reserved=1)
    stock.reserved = F("reserved") + 2

    stock.save(update_fields=["reserved"])

    stock.refresh_from_db()
    assert stock.reserved == 3


def test_a_model_instance_given_for_a_foreign_key_is_saved_as_its_key():
    stock, other = StockItemFactory(), StockItemFactory()
    stock.product_id = other.product  # Django's compiler stores the instance's key
    other.delete()

    stock.save(update_fields=["product"])

    stock.refresh_from_db()
    assert stock.product_id == other.product.pk


def test_select_on_save_asks_whether_the_row_exists_first_as_django_does(monkeypatch):
    stock = StockItemFactory()
    monkeypatch.setattr(StockItem._meta, "select_on_save", True)
    stock.reserved = 4

    with CaptureQueriesContext(connection) as queries:
        stock.save()  # not forced: update_fields would skip the SELECT in Django too

    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["SELECT", "UPDATE"]
    stock.refresh_from_db()
    assert stock.reserved == 4


def test_a_save_of_a_row_gone_from_the_database_says_so_as_django_does():
    stock = StockItemFactory()
    StockItem.objects.filter(pk=stock.pk).delete()

    with pytest.raises(DatabaseError, match="did not affect any rows"), transaction.atomic():
        stock.save(update_fields=["reserved"])
    with pytest.raises(DatabaseError, match="did not affect any rows"), transaction.atomic():
        stock.save(force_update=True)


def test_a_key_no_row_can_have_matches_nothing_as_django_does(on_each_database):
    stock = StockItemFactory()
    stock.pk = 2**63  # past a bigint: Django's lookup matches nothing rather than ask the database

    with pytest.raises(DatabaseError, match="Forced update did not affect any rows"), transaction.atomic():
        stock.save(force_update=True)


def test_the_update_hook_matches_the_django_it_overrides():
    """Django calls _do_update, a private method, with these arguments: a Django that changes them
    must be met by a change here (Django 6 adds returning_fields), not by a save that fails at run time."""
    assert inspect.signature(EventedModel._do_update).parameters.keys() == (
        inspect.signature(models.Model._do_update).parameters.keys()
    )
