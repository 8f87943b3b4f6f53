"""The relay and the metrics prune skip a bad row, log it once, count it, and go on with the rest."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from eventbus import metrics, outbox, services
from eventbus.metrics import Metric
from eventbus.models import MetricCount, OutboxEvent, SweepFailure
from tests.helpers import drain, poison, skipped_items

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_outbox_row_that_cannot_be_read_is_skipped_and_the_rest_are_published(pending_events, service_queue, caplog):
    first, poisoned, last = pending_events(3)
    poison(OutboxEvent, poisoned.pk, created_at="2020-13-45 00:00:00")  # month 13: ValueError when read

    with caplog.at_level(logging.DEBUG, logger="eventbus.sweeps"):
        report = outbox.relay_pending()
        # Its claim is the relay's own, and paces the retries; here the lease has run out.
        OutboxEvent.objects.filter(pk=poisoned.pk).update(claimed_until=None)
        outbox.relay_pending()

    assert report.published == 2
    published = {envelope["detail"]["metadata"]["eventId"] for envelope in drain(service_queue("inventory"))}
    assert published == {str(first.pk), str(last.pk)}
    assert OutboxEvent.objects.filter(pk=poisoned.pk, status="PENDING").exists()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(poisoned.pk) in errors[0].getMessage()
    assert SweepFailure.objects.get(sweep="relay-outbox").failures == 2
    assert skipped_items("relay-outbox") == 2


def test_a_row_that_breaks_while_being_marked_does_not_leave_its_batch_to_be_published_again(
    pending_events, service_queue
):
    rows = pending_events(4)
    poisoned = rows[1]
    poison(OutboxEvent, poisoned.pk, attempts="many")  # read back as a string: attempts += 1 raises

    report = outbox.relay_pending()

    assert report.published == 3
    statuses = dict(OutboxEvent.objects.values_list("pk", "status"))
    assert [statuses[row.pk] for row in rows] == ["PUBLISHED", "PENDING", "PUBLISHED", "PUBLISHED"]
    assert len(drain(service_queue("inventory"))) == 4  # the bad row was published; it is marked later
    assert SweepFailure.objects.get(sweep="relay-outbox").item == str(poisoned.pk)


def test_a_repaired_row_is_published_and_its_failure_forgotten(pending_events):
    [row] = pending_events(1)
    poison(OutboxEvent, row.pk, attempts="many")
    outbox.relay_pending()
    assert SweepFailure.objects.filter(sweep="relay-outbox").exists()

    poison(OutboxEvent, row.pk, attempts=1, claimed_until=None)
    outbox.relay_pending()

    assert OutboxEvent.objects.get(pk=row.pk).status == "PUBLISHED"
    assert not SweepFailure.objects.exists()


def test_stored_minutes_are_pruned_in_batches_whatever_a_row_holds(db, monkeypatch, settings):
    long_ago = timezone.now() - timedelta(days=60)
    rows = [
        MetricCount.objects.create(minute=long_ago, metric="EventProcessingResult", service=f"s{n}") for n in range(5)
    ]
    kept = MetricCount.objects.create(minute=timezone.now(), metric="EventProcessingResult")
    # Unreadable, yet selected by the cutoff: the prune deletes by id and never reads the rows.
    poison(MetricCount, rows[3].pk, minute="2020-13-45 00:00:00")
    monkeypatch.setattr("eventbus.sweeps.BATCH_SIZE", 2)

    assert services.prune_metrics() == 5

    assert list(MetricCount.objects.values_list("pk", flat=True)) == [kept.pk]


def test_skipped_items_go_to_cloudwatch_per_sweep_and_in_total(settings):
    metrics.record_sweep_failure(sweep="relay-outbox")
    metrics.record_sweep_failure(sweep="cancel-stuck-orders")

    series, _ = metrics.recorder.drain()
    datums = [d for d in metrics._datums(series) if d["MetricName"] == Metric.SWEEP_ITEM_FAILED]

    by_dimensions = {tuple((x["Name"], x["Value"]) for x in d["Dimensions"]): d["Value"] for d in datums}
    assert by_dimensions == {
        (("Sweep", "relay-outbox"),): 1.0,
        (("Sweep", "cancel-stuck-orders"),): 1.0,
        (): 2.0,  # the alarm's series
    }
