"""A reservation's lines are searched through the unique constraint that leads with the reservation,
so the foreign key has no index of its own: a reservation writes one index entry fewer per line."""

from __future__ import annotations

import pytest

from inventory.models import ReservationLine
from tests.helpers import single_column_indexes

pytestmark = pytest.mark.django_db


def test_a_reservations_lines_are_searched_through_the_unique_constraint():
    query_plan = ReservationLine.objects.filter(reservation_id__in=[1, 2]).explain()
    assert "SEARCH inventory_reservationline USING INDEX sqlite_autoindex_inventory_reservationline_1" in query_plan


def test_the_reservation_has_no_index_of_its_own():
    assert "reservation_id" not in single_column_indexes(ReservationLine)
    assert "product_id" in single_column_indexes(ReservationLine)  # a product's delete is refused through it
