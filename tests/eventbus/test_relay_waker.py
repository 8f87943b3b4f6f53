"""Waking the relay after a commit never holds up the commit's caller, and a broker that is down costs
one warning, not one per commit."""

from __future__ import annotations

import logging
import threading

import pytest

from eventbus import outbox, tasks
from shopbus_site.celery import app
from tests.helpers import wait_for


@pytest.fixture
def not_eager():
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True


def test_the_caller_does_not_wait_for_the_broker(not_eager, monkeypatch):
    entered, release = threading.Event(), threading.Event()

    def slow_broker(*args, **kwargs):
        entered.set()
        release.wait(timeout=30)

    monkeypatch.setattr(tasks.relay_outbox, "apply_async", slow_broker)
    waker = tasks.BackgroundRelayWaker()
    waker()
    assert entered.wait(timeout=10)  # the task is being sent, in the background …
    assert not release.is_set()  # … while the caller has already returned
    release.set()


def test_a_broker_that_is_down_is_reported_once_and_its_return_noted(not_eager, monkeypatch, caplog):
    calls = []
    down = threading.Event()
    down.set()

    def broker(*args, **kwargs):
        calls.append(1)
        if down.is_set():
            raise ConnectionError("endpoint restarting")

    monkeypatch.setattr(tasks.relay_outbox, "apply_async", broker)
    waker = tasks.BackgroundRelayWaker()
    with caplog.at_level(logging.INFO, logger="eventbus.tasks"):
        for expected in (1, 2, 3):
            waker()
            wait_for(lambda expected=expected: len(calls) >= expected, timeout=10, what="a wake-up")
        down.clear()
        waker()
        wait_for(lambda: any("again" in r.message for r in caplog.records), timeout=10, what="the recovery")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "endpoint restarting" in warnings[0].getMessage()


@pytest.mark.django_db
def test_a_kick_that_lands_on_a_worker_wakes_its_relay_thread_instead_of_relaying_beside_it(monkeypatch):
    woken = threading.Event()
    relayed = []
    monkeypatch.setattr(outbox, "relay_pending", lambda **kwargs: relayed.append(kwargs))
    outbox.set_in_process_relay_waker(woken.set)
    try:
        tasks.relay_outbox()
    finally:
        outbox.set_in_process_relay_waker(None)

    assert woken.is_set() and relayed == []

    tasks.relay_outbox()  # a process without a relay thread relays itself
    assert len(relayed) == 1
