"""An integer too large for its column is refused on PostgreSQL, with and without the workers'
server-side binding (eventbus.postgresql), never stored as what is left of it."""

from __future__ import annotations

import uuid

import pytest
from django.db import DataError, connection, transaction

from payments.models import Payment

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.mark.parametrize("attempts", [70_000, 2**32 + 5])
def test_an_integer_past_its_columns_range_is_refused_not_wrapped(attempts):
    if connection.vendor != "postgresql":
        pytest.skip("psycopg's adapters: `make test` runs this against a throwaway PostgreSQL")
    payment = Payment.objects.create(order_id=uuid.uuid4())
    payment.charge_attempts = attempts  # a smallint column

    with pytest.raises(DataError, match="out of range"), transaction.atomic():
        payment.save()

    payment.refresh_from_db()
    assert payment.charge_attempts == 0
