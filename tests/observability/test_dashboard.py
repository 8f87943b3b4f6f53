from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from eventbus import metrics
from orders import services as order_services
from tests.factories import PlaceOrderRequestFactory
from tests.flow import run_until_quiet

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def place_and_settle(count: int) -> None:
    for _ in range(count):
        order_services.place_order(request=PlaceOrderRequestFactory())
    run_until_quiet()


def render(client, window: str = "15m"):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/admin/event-flow/?window={window}")
    assert response.status_code == 200
    return response, len(queries)


def test_the_dashboard_is_for_staff_only(client):
    response = client.get("/admin/event-flow/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_dashboard_draws_the_flow(staff_client, provisioned, catalogue):
    metrics.recorder.drain()
    place_and_settle(3)
    metrics.record_delivery(
        service="inventory", detail_type="Order Placed", result="processed", processing_ms=12, end_to_end_ms=40
    )
    metrics.record_delivery(
        service="inventory", detail_type="Order Placed", result="failed", processing_ms=5, end_to_end_ms=None
    )
    metrics.record_publish(detail_type="Order Placed", result="published", lag_ms=25)
    metrics.flush()

    response, _ = render(staff_client)
    page = response.content.decode()
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 7
    assert "Deliveries handled per step, by service" in page
    assert "inventory (2)" in page  # the legend counts what the window holds
    assert 'id="alarms"' in page and "inventory: messages in its DLQ" in page
    assert "order-processing-queue" in page


def test_the_dashboard_makes_as_many_queries_at_500_orders_as_at_1(staff_client, provisioned, catalogue):
    place_and_settle(1)
    metrics.flush()
    with_one = {window: render(staff_client, window)[1] for window in ("15m", "1h", "1d")}
    place_and_settle(499)
    metrics.flush()
    with_many = {window: render(staff_client, window)[1] for window in ("15m", "1h", "1d")}
    assert with_many == with_one


def test_the_published_chart_counts_published_entries_only(provisioned):
    from eventbus.metrics import Metric
    from observability import selectors

    metrics.recorder.drain()
    for result in ("published", "retrying", "retrying", "failed"):
        metrics.record_publish(detail_type="Order Placed", result=result, lag_ms=None)
    metrics.flush()
    _, lines = selectors.flow_per_step(
        window="15m", metric=Metric.PUBLISH_RESULT, group_by="event_type", result="published"
    )
    assert [(line.label, line.total) for line in lines] == [("Order Placed", 1)]


def test_percentiles_never_exceed_the_largest_value_seen(provisioned):
    from eventbus.metrics import Metric
    from observability import selectors

    metrics.recorder.drain()
    for _ in range(10):
        metrics.record_delivery(
            service="orders", detail_type="Order Placed", result="processed", processing_ms=0.2, end_to_end_ms=700_000
        )
    metrics.flush()
    [orders, overall] = selectors.latency_percentiles(window="15m", metric=Metric.END_TO_END_LATENCY)
    assert orders.label == "orders" and overall.label == "all services"
    assert orders.p99 <= 700_000 and orders.p50 >= 600_000
    [timing, _] = selectors.latency_percentiles(window="15m", metric=Metric.PROCESSING_TIME)
    assert timing.p99 <= 0.2
