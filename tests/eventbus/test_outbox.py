from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest
from botocore.stub import Stubber
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from eventbus import aws, claims, event_types, events, outbox
from eventbus.models import OutboxEvent, SweepFailure
from inventory.models import StockItem
from orders import services as order_services
from orders.models import Order
from tests.factories import OrderItemFactory, PlaceOrderRequestFactory, ProductFactory
from tests.helpers import drain, poison, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    pass


def test_a_rolled_back_order_publishes_nothing(provisioned, catalogue, service_queue):
    with pytest.raises(Boom), transaction.atomic():
        order_services.place_order(request=PlaceOrderRequestFactory())
        assert OutboxEvent.objects.filter(detail_type="Order Placed").count() == 1  # recorded inside …
        raise Boom

    assert not Order.objects.exists()
    assert not OutboxEvent.objects.filter(detail_type="Order Placed").exists()  # … and gone with it
    outbox.relay_pending()
    assert drain(service_queue("inventory")) == []


def test_commit_wakes_the_relay_and_the_event_is_published(provisioned, catalogue, service_queue):
    order = order_services.place_order(request=PlaceOrderRequestFactory())

    row = OutboxEvent.objects.get(detail_type="Order Placed")
    assert row.status == OutboxEvent.Status.PUBLISHED
    assert row.event_bridge_id
    [envelope] = drain(service_queue("inventory"))
    assert envelope["detail"]["data"]["orderId"] == str(order.id)
    assert envelope["detail"]["metadata"]["eventId"] == str(row.id)


def test_a_crash_between_commit_and_publish_is_published_by_the_next_relay_run(
    provisioned, catalogue, service_queue, monkeypatch
):
    # The process "dies" after commit: the on-commit wake-up never reaches a relay.
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)
    order = order_services.place_order(request=PlaceOrderRequestFactory())
    assert OutboxEvent.objects.get(detail_type="Order Placed").status == OutboxEvent.Status.PENDING
    assert drain(service_queue("inventory")) == []

    report = outbox.relay_pending()

    assert report.published == 1
    [envelope] = drain(service_queue("inventory"))
    assert envelope["detail"]["data"]["orderId"] == str(order.id)
    assert outbox.relay_pending().published == 0  # published once, not again


def test_a_bus_that_is_down_keeps_events_pending_until_it_is_back(provisioned, catalogue, service_queue, monkeypatch):
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)
    order_services.place_order(request=PlaceOrderRequestFactory())
    with override_settings(AWS_ENDPOINT_URL="http://127.0.0.1:9"):  # nothing listens there
        report = outbox.relay_pending()
    assert report.retrying == 1
    row = OutboxEvent.objects.get(detail_type="Order Placed")
    assert row.status == OutboxEvent.Status.PENDING
    assert row.attempts == 1
    assert "Could not connect" in row.last_error
    assert row.next_attempt_at > row.created_at

    OutboxEvent.objects.filter(pk=row.pk).update(next_attempt_at=row.created_at)  # the backoff has passed
    assert outbox.relay_pending().published == 1
    assert len(drain(service_queue("inventory"))) == 1


def test_entries_that_fail_individually_are_retried_and_the_rest_are_not(
    provisioned, catalogue, service_queue, monkeypatch
):
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)
    first = order_services.place_order(request=PlaceOrderRequestFactory())
    second = order_services.place_order(request=PlaceOrderRequestFactory())
    rows = {row.correlation_id: row for row in OutboxEvent.objects.filter(detail_type="Order Placed")}

    with Stubber(aws.client("events")) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [
                    {"EventId": "accepted-1"},
                    {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"},
                ],
            },
        )
        report = outbox.relay_pending()
    assert (report.published, report.retrying) == (1, 1)
    accepted, throttled = (
        OutboxEvent.objects.get(pk=rows[str(first.id)].pk),
        OutboxEvent.objects.get(pk=rows[str(second.id)].pk),
    )
    assert accepted.status == OutboxEvent.Status.PUBLISHED and accepted.event_bridge_id == "accepted-1"
    assert throttled.status == OutboxEvent.Status.PENDING
    assert throttled.last_error.startswith("ThrottlingException")

    OutboxEvent.objects.filter(pk=throttled.pk).update(next_attempt_at=throttled.created_at)
    assert outbox.relay_pending().published == 1
    [envelope] = drain(service_queue("inventory"))
    assert envelope["detail"]["data"]["orderId"] == str(second.id)


def test_each_published_row_of_a_batch_keeps_its_own_eventbridge_id_and_count_of_attempts(
    provisioned, catalogue, monkeypatch
):
    outbox.relay_pending()  # the catalogue's own Stock Updated events
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)
    orders = [order_services.place_order(request=PlaceOrderRequestFactory()) for _ in range(3)]
    rows = {row.correlation_id: row for row in OutboxEvent.objects.filter(detail_type="Order Placed")}
    OutboxEvent.objects.filter(pk=rows[str(orders[1].id)].pk).update(attempts=2)  # throttled twice before
    in_order = sorted(orders, key=lambda order: (rows[str(order.id)].created_at, rows[str(order.id)].id))

    with Stubber(aws.client("events")) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [{"EventId": f"bridge-{n}"} for n in range(3)]},
        )
        assert outbox.relay_pending().published == 3

    for n, order in enumerate(in_order):
        row = OutboxEvent.objects.get(pk=rows[str(order.id)].pk)
        assert (row.status, row.event_bridge_id, row.last_error) == (OutboxEvent.Status.PUBLISHED, f"bridge-{n}", "")
        assert row.attempts == (3 if order == orders[1] else 1)
        assert row.published_at is not None and row.claimed_until is None


def test_an_entry_rejected_for_good_is_marked_failed_and_can_be_requeued(provisioned, catalogue, monkeypatch):
    outbox.relay_pending()  # the catalogue's own Stock Updated events
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)
    order_services.place_order(request=PlaceOrderRequestFactory())
    with Stubber(aws.client("events")) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}],
            },
        )
        assert outbox.relay_pending().failed == 1
    row = OutboxEvent.objects.get(detail_type="Order Placed")
    assert row.status == OutboxEvent.Status.FAILED
    assert row.last_error == "MalformedDetail: Detail is malformed."

    assert outbox.requeue_failed_events(event_ids=[str(row.pk)]) == [row]
    assert outbox.relay_pending().published == 1


def _record_order_placed(item: StockItem, *, item_count: int) -> None:
    """Order Placed with `item_count` lines: about 78 bytes of detail per line."""
    order_id = str(uuid.uuid4())
    lines = [
        {"productId": f"sku-{n:05d}", "name": "A product", "unitPrice": "1.00", "quantity": 1}
        for n in range(item_count)
    ]
    address = {"street": "1 Main St", "city": "Seattle", "state": "WA", "zipCode": "98101", "country": "US"}
    item.record_event(
        event_types.ORDER_PLACED,
        {
            "orderId": order_id,
            "customerId": "c-1",
            "items": lines,
            "totalAmount": f"{item_count}.00",
            "currency": "USD",
            "shippingAddress": address,
        },
        correlation_id=order_id,
    )


def test_batches_hold_at_most_ten_entries_and_256_kb(provisioned, monkeypatch):
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)
    sizes: list[int] = []
    aws.client("events").meta.events.register(
        "provide-client-params.events.PutEvents", lambda params, **kw: sizes.append(len(params["Entries"]))
    )
    item = StockItem.objects.get(product=ProductFactory())
    with transaction.atomic():
        # 23 small events, then 3 of ~100 KB: the third big one would push its call over 256 KB.
        for _ in range(23):
            _record_order_placed(item, item_count=1)
        for _ in range(3):
            _record_order_placed(item, item_count=1200)
        item.save()

    report = outbox.relay_pending()

    assert report.published == 26
    assert sizes == [10, 10, 5, 1]
    assert not OutboxEvent.objects.exclude(status=OutboxEvent.Status.PUBLISHED).exists()


def test_an_event_over_256_kb_is_refused_when_recorded(db):
    item = StockItem.objects.get(product=ProductFactory())
    _record_order_placed(item, item_count=3500)
    with pytest.raises(outbox.EventTooLarge), transaction.atomic():
        item.save()
    assert not OutboxEvent.objects.exists()


def test_recording_events_outside_a_transaction_is_refused(db):
    product = ProductFactory()
    item = StockItem.objects.get(product=product)
    item.record_event(
        event_types.STOCK_UPDATED,
        {"productId": product.sku, "onHand": 1, "reserved": 0, "available": 1, "change": 1, "reasonCode": "RESTOCK"},
        correlation_id=product.sku,
    )
    item.on_hand = 1
    # Autocommit: the save would commit before the outbox row could join it, so it is refused first.
    with pytest.raises(RuntimeError, match="outside transaction.atomic"):
        item.save()
    item.refresh_from_db()
    assert item.on_hand == 100
    assert not OutboxEvent.objects.exists()


def test_events_recorded_while_handling_another_name_it_as_their_cause(db, catalogue):
    with events.caused_by("6b1f6844-b06e-4f3d-9ab7-64de9a71e25e"):
        order_services.place_order(request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id="prod-2")]))
    metadata = OutboxEvent.objects.get(detail_type="Order Placed").detail["metadata"]
    assert metadata["causationId"] == "6b1f6844-b06e-4f3d-9ab7-64de9a71e25e"
    assert metadata["schemaVersion"] == 1
    assert metadata["occurredAt"].endswith("Z")


def restocked(item: StockItem, on_hand: int) -> None:
    item.on_hand = on_hand
    item.record_event(
        event_types.STOCK_UPDATED,
        {
            "productId": item.product.sku,
            "onHand": on_hand,
            "reserved": 0,
            "available": on_hand,
            "change": 1,
            "reasonCode": "RESTOCK",
        },
        correlation_id=item.product.sku,
    )
    item.save()


def test_rows_written_together_insert_a_transaction_s_events_with_one_statement(db, monkeypatch):
    woken = []
    monkeypatch.setattr(outbox, "wake_relay", lambda: woken.append(1))
    items = [StockItem.objects.get(product=ProductFactory()) for _ in range(3)]

    with CaptureQueriesContext(connection) as queries, transaction.atomic(), outbox.rows_written_together():
        for on_hand, item in enumerate(items, start=1):
            restocked(item, on_hand)
        assert not OutboxEvent.objects.filter(detail_type="Stock Updated", detail__data__change=1).exists()

    inserts = [query["sql"] for query in queries if query["sql"].startswith('INSERT INTO "eventbus_outboxevent"')]
    assert len(inserts) == 1
    assert sorted(
        OutboxEvent.objects.filter(detail__data__change=1).values_list("detail__data__onHand", flat=True)
    ) == [1, 2, 3]
    assert woken == [1]


def test_rows_written_together_still_write_a_change_s_events_when_an_exception_is_caught(db):
    # A caller that catches the exception and commits must not commit a change without its events.
    item = StockItem.objects.get(product=ProductFactory())
    with transaction.atomic(), pytest.raises(ZeroDivisionError), outbox.rows_written_together():
        restocked(item, 7)
        1 / 0  # noqa: B018 - the failure after the save

    assert StockItem.objects.get(pk=item.pk).on_hand == 7
    assert OutboxEvent.objects.filter(detail__data__change=1, detail__data__onHand=7).count() == 1


def test_rows_written_together_roll_back_with_a_savepoint_their_change_rolled_back_with(db):
    kept, undone = (StockItem.objects.get(product=ProductFactory()) for _ in range(2))
    with transaction.atomic(), outbox.rows_written_together():
        restocked(kept, 5)
        with contextlib.suppress(ZeroDivisionError), transaction.atomic():
            restocked(undone, 6)
            1 / 0  # noqa: B018 - the failure after the save

    assert StockItem.objects.get(pk=undone.pk).on_hand == 100
    assert sorted(
        OutboxEvent.objects.filter(detail__data__change=1).values_list("detail__data__onHand", flat=True)
    ) == [5]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_rows_written_together_leave_a_failed_statement_s_error_as_the_one_raised():
    # A failed statement aborts a PostgreSQL transaction, so the kept rows cannot go in: the error
    # reported (and kept with the delivery's failure) must be the statement's, not the INSERT's.
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: `make test` runs it against a throwaway server")
    item = StockItem.objects.get(product=ProductFactory())
    with (
        pytest.raises(DatabaseError, match="division by zero"),
        transaction.atomic(),
        outbox.rows_written_together(),
        connection.cursor() as cursor,
    ):
        restocked(item, 7)
        cursor.execute("SELECT 1 / 0")

    assert StockItem.objects.get(pk=item.pk).on_hand == 100
    assert not OutboxEvent.objects.filter(detail__data__change=1).exists()


def test_a_commit_made_while_a_pass_waits_on_the_bus_is_published_by_the_other_relay_thread(
    provisioned, catalogue, monkeypatch
):
    outbox.relay_pending()  # the catalogue's own Stock Updated events
    events_client = aws.client("events")
    put_events = events_client.put_events
    first_put_started, release_first_put = threading.Event(), threading.Event()

    def slow_first_put(**kwargs):
        if not first_put_started.is_set():
            first_put_started.set()
            release_first_put.wait(10)
        return put_events(**kwargs)

    monkeypatch.setattr(events_client, "put_events", slow_first_put)
    with relay_threads():
        try:
            first = order_services.place_order(request=PlaceOrderRequestFactory())
            assert first_put_started.wait(10)
            second = order_services.place_order(request=PlaceOrderRequestFactory())

            def status_of(order):
                return OutboxEvent.objects.get(detail_type="Order Placed", correlation_id=str(order.id)).status

            wait_for(lambda: status_of(second) == OutboxEvent.Status.PUBLISHED, timeout=10)
            assert status_of(first) == OutboxEvent.Status.PENDING  # still in the first pass's PutEvents
            release_first_put.set()
            wait_for(lambda: status_of(first) == OutboxEvent.Status.PUBLISHED, timeout=10)
        finally:
            release_first_put.set()


@contextlib.contextmanager
def relay_threads(count: int = 2, *, sweeps: bool = True):
    relays = outbox.RelayThreads(sweeps=sweeps, count=count)
    relays.start()
    wait_for(lambda: outbox._this_process_relay() is not None, timeout=5, what="the relay threads")
    try:
        yield relays
    finally:
        relays.stop(timeout=10)


@pytest.fixture
def relay_not_yet_running():
    """This process as a worker whose relay threads have not yet come to the rows it hands them: what
    it hands, as (id, the lease it was born with)."""
    handed: list[tuple[uuid.UUID, datetime]] = []

    def hand(ids, claimed_until):
        handed.extend((row_id, claimed_until) for row_id in ids)

    outbox.set_in_process_relay(outbox.InProcessRelay(owner=str(claims.current()), hand=hand))
    yield handed
    outbox.set_in_process_relay(None)


ELSEWHERE = claims.Owner(host="elsewhere:0123456789ab", pid=1, started="1")


def placed_row(order: Order) -> OutboxEvent:
    return OutboxEvent.objects.get(detail_type="Order Placed", correlation_id=str(order.id))


def test_rows_a_worker_writes_are_born_claimed_and_published_without_a_claim_pass(
    provisioned, catalogue, service_queue, monkeypatch
):
    claim_passes = []
    claim_due_rows = outbox._claim_due_rows
    monkeypatch.setattr(outbox, "_claim_due_rows", lambda **kwargs: claim_passes.append(1) or claim_due_rows(**kwargs))
    with relay_threads():
        order = order_services.place_order(request=PlaceOrderRequestFactory())
        wait_for(lambda: placed_row(order).status == OutboxEvent.Status.PUBLISHED, timeout=10)

    assert placed_row(order).claimed_by == str(claims.current())
    assert claim_passes == []
    assert [envelope["detail"]["data"]["orderId"] for envelope in drain(service_queue("inventory"))] == [str(order.id)]


def test_a_web_process_publishes_what_its_requests_commit_itself_without_a_kick_or_a_claim_pass(
    provisioned, catalogue, service_queue, settings, monkeypatch
):
    outbox.relay_pending()  # the catalogue's own Stock Updated events
    settings.OUTBOX_RELAY_INTERVAL_SECONDS = 1
    kicks, claim_passes = [], []
    monkeypatch.setattr(outbox, "_task_waker", lambda: kicks.append(1))
    claim_due_rows = outbox._claim_due_rows
    monkeypatch.setattr(outbox, "_claim_due_rows", lambda **kwargs: claim_passes.append(1) or claim_due_rows(**kwargs))
    with relay_threads(sweeps=False):
        order = order_services.place_order(request=PlaceOrderRequestFactory())
        wait_for(lambda: placed_row(order).status == OutboxEvent.Status.PUBLISHED, timeout=10)
        time.sleep(1.5)  # past the interval at which a worker's relay thread passes over every due row

    assert placed_row(order).claimed_by == str(claims.current())
    assert (kicks, claim_passes) == ([], [])
    assert [envelope["detail"]["data"]["orderId"] for envelope in drain(service_queue("inventory"))] == [str(order.id)]


def test_a_web_process_leaves_every_other_row_to_the_workers_and_idles_between_commits(
    provisioned, catalogue, settings, monkeypatch
):
    settings.OUTBOX_RELAY_INTERVAL_SECONDS = 1
    outbox.relay_pending()
    kicks = []
    monkeypatch.setattr(outbox, "_task_waker", lambda: kicks.append(1))
    order = order_services.place_order(request=PlaceOrderRequestFactory())  # before its relay threads
    relays = outbox.RelayThreads(sweeps=False)
    waits = []
    wait = relays.wakeups.wait
    monkeypatch.setattr(relays.wakeups, "wait", lambda timeout: waits.append(timeout) or wait(timeout))
    relays.start()
    try:
        wait_for(lambda: outbox._this_process_relay() is not None, timeout=5, what="the relay threads")
        outbox.wake_relay()  # what the admin's "send again" does, say
        time.sleep(3.5)
    finally:
        relays.stop(timeout=10)

    assert placed_row(order).status == OutboxEvent.Status.PENDING
    assert kicks == [1, 1]  # the placement's and the wake-up, both through the broker to a worker
    assert len(waits) <= 2 * 5  # each thread waits out the interval, however long it has idled


def test_rows_queued_for_busy_relay_threads_are_given_back_and_announced_when_the_threads_stop(
    provisioned, catalogue, monkeypatch
):
    outbox.relay_pending()
    publishing, go_on = threading.Event(), threading.Event()
    relay_handed = outbox.relay_handed

    def slow_relay_handed(**kwargs):
        publishing.set()
        go_on.wait(10)  # PutEvents taking its time
        return relay_handed(**kwargs)

    monkeypatch.setattr(outbox, "relay_handed", slow_relay_handed)
    relays = outbox.RelayThreads(sweeps=False, count=1)
    relays.start()
    wait_for(lambda: outbox._this_process_relay() is not None, timeout=5, what="the relay threads")
    first = order_services.place_order(request=PlaceOrderRequestFactory())
    assert publishing.wait(5)
    second = order_services.place_order(request=PlaceOrderRequestFactory())  # handed; no thread is free

    stopping = threading.Thread(target=relays.stop, kwargs={"timeout": 10})
    stopping.start()
    # The second row is published by the kick, here and now, while the only thread is still busy.
    wait_for(lambda: placed_row(second).status == OutboxEvent.Status.PUBLISHED, timeout=10)
    go_on.set()
    stopping.join(15)

    assert placed_row(first).status == OutboxEvent.Status.PUBLISHED
    assert not stopping.is_alive()


def test_a_dead_relay_is_named_once_however_many_rows_it_held(provisioned, catalogue, monkeypatch):
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)
    me = claims.current()
    dead = f"{me.host}/999999/12345"
    for _ in range(3):
        order_services.place_order(request=PlaceOrderRequestFactory())
    OutboxEvent.objects.filter(detail_type="Order Placed").update(
        claimed_by=dead, claimed_until=timezone.now() + timedelta(seconds=60)
    )

    assert outbox._dead_owners(now=timezone.now(), me=me) == [dead]


def test_a_row_born_claimed_is_left_to_its_owner_until_its_lease_runs_out(
    provisioned, catalogue, service_queue, relay_not_yet_running
):
    outbox.relay_pending()  # the catalogue's own Stock Updated events
    order = order_services.place_order(request=PlaceOrderRequestFactory())
    row = placed_row(order)
    assert relay_not_yet_running == [(row.id, row.claimed_until)]
    assert (row.claimed_by, row.claimed_until > timezone.now()) == (str(claims.current()), True)

    assert outbox.relay_pending(owner=ELSEWHERE).published == 0  # the owner is alive and its lease runs
    OutboxEvent.objects.filter(pk=row.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert outbox.relay_pending(owner=ELSEWHERE).published == 1
    # The owner's relay comes to it at last, and finds it taken over: it is not published twice.
    assert outbox.relay_handed(handed=relay_not_yet_running, owner=claims.current()).published == 0

    assert [envelope["detail"]["data"]["orderId"] for envelope in drain(service_queue("inventory"))] == [str(order.id)]


def test_a_rolled_back_transaction_hands_the_relay_nothing(provisioned, catalogue, relay_not_yet_running):
    with pytest.raises(Boom), transaction.atomic():
        order_services.place_order(request=PlaceOrderRequestFactory())
        raise Boom

    assert relay_not_yet_running == []


def test_rows_handed_to_a_relay_thread_that_stops_are_given_back_at_once(provisioned, catalogue, relay_not_yet_running):
    order = order_services.place_order(request=PlaceOrderRequestFactory())
    stop, wakeups = threading.Event(), outbox.RelayWakeups()
    for row_id, claimed_until in relay_not_yet_running:
        wakeups.hand([row_id], claimed_until)
    stop.set()  # stopping before it came to them

    relay = outbox.RelayThread(stop, wakeups)
    relay.start()
    relay.join(10)

    assert placed_row(order).claimed_until is None  # the next relay, anywhere, takes it now
    assert outbox.relay_pending(owner=ELSEWHERE).published >= 1
    assert placed_row(order).status == OutboxEvent.Status.PUBLISHED


def test_a_process_forked_from_a_worker_relays_as_one_without_relay_threads(provisioned, catalogue, monkeypatch):
    # A Celery prefork child inherits its parent's registrations, with copies of wake-ups that no
    # thread of its own waits on.
    parent = os.getpid() + 1
    handed, woken = [], []
    monkeypatch.setattr(
        outbox,
        "_in_process_relay",
        outbox.InProcessRelay(owner="the parent", hand=lambda ids, until: handed.extend(ids), pid=parent),
    )
    monkeypatch.setattr(outbox, "_in_process_waker", (parent, lambda: woken.append(1)))

    order = order_services.place_order(request=PlaceOrderRequestFactory())

    assert (handed, woken) == ([], [])
    assert placed_row(order).status == OutboxEvent.Status.PUBLISHED  # by the task kick, as from the web server


@pytest.mark.parametrize("other", [ELSEWHERE, None], ids=["another worker", "the sibling relay thread"])
def test_a_handed_row_whose_lease_ran_out_while_it_waited_is_published_once(
    provisioned, catalogue, service_queue, relay_not_yet_running, monkeypatch, other
):
    outbox.relay_pending()  # the catalogue's own events
    order = order_services.place_order(request=PlaceOrderRequestFactory())
    # Every relay thread was busy (a slow PutEvents) for longer than the lease while the row waited to
    # be published: its lease ran out, and a pass over due rows claims it.
    ran_out = timezone.now() - timedelta(seconds=1)
    OutboxEvent.objects.filter(pk=placed_row(order).pk).update(claimed_until=ran_out)
    handed = [(row_id, ran_out) for row_id, _ in relay_not_yet_running]
    first_event_times = outbox._first_event_times
    raced = []

    def another_pass_runs_meanwhile(rows):
        if not raced:
            raced.append(outbox.relay_pending(owner=other or claims.current()).published)
        return first_event_times(rows)

    monkeypatch.setattr(outbox, "_first_event_times", another_pass_runs_meanwhile)
    outbox.relay_handed(handed=handed, owner=claims.current())
    outbox.relay_pending(owner=other or claims.current())

    published = [envelope["detail"]["metadata"]["eventId"] for envelope in drain(service_queue("inventory"))]
    assert published == [str(placed_row(order).pk)]


def test_rows_committed_after_the_relay_threads_stopped_go_back_and_kick_the_relay(provisioned, catalogue):
    outbox.relay_pending()
    relays = outbox.RelayThreads(sweeps=True)
    relays.start()
    wait_for(lambda: outbox._this_process_relay() is not None, timeout=5, what="the relay threads")
    # A poller's receive is in its transaction when the threads stop; it commits after.
    with transaction.atomic():
        order = order_services.place_order(request=PlaceOrderRequestFactory())
        relays.stop(timeout=10)
        assert not any(relay.is_alive() for relay in relays.threads)

    # Given back and kicked, as a process without relay threads does (the tests run the kick at once).
    assert placed_row(order).status == OutboxEvent.Status.PUBLISHED


def test_a_relay_thread_passes_over_every_due_row_at_least_every_interval_however_busy(settings, monkeypatch):
    settings.OUTBOX_RELAY_INTERVAL_SECONDS = 2
    passes: list[float] = []
    monkeypatch.setattr(outbox, "relay_pending", lambda **kwargs: passes.append(time.monotonic()))
    monkeypatch.setattr(outbox, "relay_handed", lambda **kwargs: None)
    stop, wakeups = threading.Event(), outbox.RelayWakeups()
    relay = outbox.RelayThread(stop, wakeups)
    started = time.monotonic()
    relay.start()
    try:
        time.sleep(1.6)
        wakeups.hand([uuid.uuid4()], timezone.now())  # a commit just before the pass is due
        wait_for(lambda: passes, timeout=10, what="a pass over due rows")
    finally:
        stop.set()
        wakeups.close()
        relay.join(5)
    # Due at 2 s; a wait that started afresh at the hand would put it at 3.6 s.
    assert passes[0] - started < 3.0


def test_a_row_another_relay_published_meanwhile_is_skipped_not_recorded_as_bad(provisioned, catalogue):
    outbox.relay_pending()
    me = claims.current()
    good = placed_row(order_services.place_order(request=PlaceOrderRequestFactory()))
    bad = placed_row(order_services.place_order(request=PlaceOrderRequestFactory()))
    OutboxEvent.objects.filter(pk__in=[good.pk, bad.pk]).update(
        claimed_by=str(me), claimed_until=timezone.now() + timedelta(seconds=60)
    )
    poison(OutboxEvent, bad.pk, created_at="2020-13-45 00:00:00")  # cannot be read
    OutboxEvent.objects.filter(pk=good.pk).update(status=OutboxEvent.Status.PUBLISHED)  # by another relay

    outbox.relay_claimed(ids=[good.pk, bad.pk], owner=me)

    assert set(SweepFailure.objects.filter(sweep="relay-outbox").values_list("item", flat=True)) == {str(bad.pk)}
