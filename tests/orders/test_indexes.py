"""An order's status and API client, and an order line's order, are searched through the composite
indexes they lead, which replace an index of their own: a transition moves one status entry, not two,
and a placement writes two index entries fewer for the order and one for each line."""

from __future__ import annotations

import pytest

from orders.models import Order, OrderLine
from tests.helpers import single_column_indexes

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("queryset", "index"),
    [
        pytest.param(
            lambda: Order.objects.filter(status=Order.Status.PLACED),
            "order_status_age_idx",
            id="the admin's status filter",
        ),
        pytest.param(lambda: Order.objects.filter(api_client_id=1), "order_client_recent_idx", id="a client's orders"),
        pytest.param(
            lambda: OrderLine.objects.filter(order_id__in=[1, 2]),
            "sqlite_autoindex_orders_orderline_1",
            id="an order's lines (one_line_per_product_per_order)",
        ),
    ],
)
def test_a_look_up_searches_the_composite_index_it_leads(queryset, index):
    looked_up = queryset()
    query_plan = looked_up.explain()
    assert f"SEARCH {looked_up.model._meta.db_table} USING INDEX {index}" in query_plan, query_plan


@pytest.mark.parametrize(
    ("model", "columns"),
    [(Order, {"status", "api_client_id"}), (OrderLine, {"order_id"})],
    ids=["order", "order line"],
)
def test_no_column_a_composite_index_leads_keeps_an_index_of_its_own(model, columns):
    assert not single_column_indexes(model) & columns
