"""The Celery worker bootstep that consumes the event queues and flushes the process's metrics. Kept
import-light: it is loaded with the Celery app, before Django is set up."""

from __future__ import annotations

import logging
import threading

from celery import bootsteps
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

logger = logging.getLogger(__name__)
_child_flusher: tuple[threading.Event, threading.Thread] | None = None


@worker_process_init.connect
def _start_child_flusher(**kwargs) -> None:
    """Celery's prefork children run tasks (the outbox relay among them) and record their metrics in
    their own memory: each child flushes them itself."""
    global _child_flusher
    from .metrics import MetricsFlusher

    stop = threading.Event()
    flusher = MetricsFlusher(stop)
    flusher.start()
    _child_flusher = (stop, flusher)


# The solo pool sends worker_process_init in the worker's own process and no worker_process_shutdown:
# its flusher stops with the worker.
@worker_process_shutdown.connect
@worker_shutdown.connect
def _stop_child_flusher(**kwargs) -> None:
    global _child_flusher
    if _child_flusher is not None:
        stop, flusher = _child_flusher
        stop.set()
        flusher.join(5)
        _child_flusher = None


def choose_services(option: str | None, configured: list[str]) -> list[str] | None:
    """None means every subscribed service; an empty list means none."""
    raw = option if option is not None else ",".join(configured)
    if raw.strip().lower() == "none":
        return []
    chosen = [name.strip() for name in raw.split(",") if name.strip()]
    return chosen or None


class EventConsumerStep(bootsteps.StartStopStep):
    label = "event consumers"

    def __init__(self, worker, event_consumers: str | None = None, **options) -> None:
        super().__init__(worker, **options)
        self.option = event_consumers
        self.consumer = None
        self.flusher = None
        self.flusher_stop = threading.Event()

    def start(self, worker) -> None:
        from django.conf import settings

        from .consuming import EventConsumer
        from .metrics import MetricsFlusher

        # Every worker flushes metrics, consumers or not: its Celery tasks relay the outbox too.
        self.flusher_stop.clear()
        self.flusher = MetricsFlusher(self.flusher_stop)
        self.flusher.start()
        services = choose_services(self.option, settings.EVENT_CONSUMERS)
        if services == []:
            logger.info("this worker consumes no event queue")
            return
        self.consumer = EventConsumer(services)
        self.consumer.start()
        logger.info("consuming events for: %s", ", ".join(self.consumer.services))

    def stop(self, worker) -> None:
        if self.consumer is not None:
            self.consumer.stop()
            self.consumer = None
        if self.flusher is not None:
            self.flusher_stop.set()
            self.flusher.join(10)
            self.flusher = None
        # A solo pool's flusher runs in this process too, and a cold shutdown sends no worker_shutdown.
        _stop_child_flusher()

    # Celery calls terminate on a cold shutdown and shutdown at exit; the base class would only act
    # on `self.obj`, leaving the poller threads running.
    terminate = stop
    shutdown = stop
