"""Outbox claims: a relay that is certainly dead loses its rows at once; a live relay keeps its rows,
however long it publishes; anyone else's claim runs out with its lease."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from eventbus import aws, claims, outbox
from eventbus.models import OutboxEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pending(pending_events) -> list[OutboxEvent]:
    return pending_events(1)


@pytest.fixture
def another_relay_process() -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def owner_of(process: subprocess.Popen) -> claims.Owner:
    """The identity a relay running in `process`, on this host, claims rows with."""
    started = claims.start_time(process.pid)
    assert started, "no /proc here: owners cannot be checked on this system"
    return claims.Owner(host=claims.current().host, pid=process.pid, started=started)


def claim_for(owner: claims.Owner, rows: list[OutboxEvent], *, until) -> None:
    OutboxEvent.objects.filter(pk__in=[row.pk for row in rows]).update(claimed_by=str(owner), claimed_until=until)


def test_rows_claimed_by_a_relay_that_died_on_this_host_are_published_at_once(pending, another_relay_process):
    dead = owner_of(another_relay_process)
    another_relay_process.kill()
    another_relay_process.wait()
    claim_for(dead, pending, until=timezone.now() + timedelta(hours=1))

    report = outbox.relay_pending()

    assert report.published == len(pending)


def test_rows_claimed_by_a_live_relay_on_this_host_are_left_to_it(pending, another_relay_process):
    claim_for(owner_of(another_relay_process), pending, until=timezone.now() + timedelta(hours=1))

    report = outbox.relay_pending()

    assert report.published == 0
    assert set(OutboxEvent.objects.values_list("status", flat=True).filter(pk__in=[r.pk for r in pending])) == {
        "PENDING"
    }


def test_a_reused_pid_is_not_the_relay_that_held_it(pending, another_relay_process):
    # Same pid, another start time: the process that claimed the rows is gone.
    live = owner_of(another_relay_process)
    gone = claims.Owner(host=live.host, pid=live.pid, started=str(int(live.started) - 1))
    claim_for(gone, pending, until=timezone.now() + timedelta(hours=1))

    assert outbox.relay_pending().published == len(pending)


def test_a_claim_from_another_host_runs_out_with_its_lease(pending):
    elsewhere = claims.Owner(host="another-host:0123456789ab", pid=1, started="1")
    claim_for(elsewhere, pending, until=timezone.now() + timedelta(minutes=1))
    assert outbox.relay_pending().published == 0

    claim_for(elsewhere, pending, until=timezone.now() - timedelta(seconds=1))
    assert outbox.relay_pending().published == len(pending)


def test_a_live_relay_keeps_its_rows_past_the_lease_while_it_publishes(pending, settings):
    settings.OUTBOX_CLAIM_LEASE_SECONDS = 1
    [row] = pending
    elsewhere = claims.Owner(host="another-host:0123456789ab", pid=1, started="1")
    seen: dict[str, object] = {}

    def slow_put_events(**kwargs) -> None:
        # PutEvents hangs past the lease; meanwhile the claim is renewed and another relay gets nothing.
        first_lease_end = OutboxEvent.objects.get(pk=row.pk).claimed_until
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            claimed_until = OutboxEvent.objects.get(pk=row.pk).claimed_until
            if timezone.now() > first_lease_end and claimed_until > timezone.now():
                break
            time.sleep(0.05)
        seen["renewed"] = claimed_until > first_lease_end
        seen["taken"] = outbox.relay_pending(owner=elsewhere).published

    events = aws.client("events")
    events.meta.events.register_first("before-call.events.PutEvents", slow_put_events)
    try:
        report = outbox.relay_pending()
    finally:
        events.meta.events.unregister("before-call.events.PutEvents", slow_put_events)

    assert seen == {"renewed": True, "taken": 0}
    assert report.published == 1
    assert OutboxEvent.objects.get(pk=row.pk).claimed_until is None
