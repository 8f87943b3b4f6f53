"""What a web process runs beside its requests (shopbus_site.wsgi, unless OUTBOX_RELAY_IN_WEB is off):
relay threads that publish the outbox rows its requests commit, and a metrics flusher for what they
record of it (OutboxPublishLag, OutboxPublishResult, OutboxBatchSize)."""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass

from . import aws
from .metrics import MetricsFlusher
from .outbox import RelayThreads


@dataclass
class Publishing:
    relays: RelayThreads
    flusher: MetricsFlusher

    def stop(self, *, timeout: float = 5) -> None:
        # The relays first, so that the flusher's last flush holds what they published last.
        self.relays.stop(timeout=timeout)
        self.flusher.stop_event.set()
        self.flusher.join(timeout)


def publish_own_commits() -> Publishing:
    """Start relay threads that publish the rows this process's requests commit, born claimed as a
    worker's are, instead of kicking a worker's relay through the broker: a placement's Order Placed
    then reaches the bus one PutEvents after its commit, not after a Celery task's trip through SQS and
    a worker's claim transaction (docs/performance.md). They leave every other row to the workers.
    Everything stops, giving back what the relays were handed and did not publish and flushing the
    metrics, when the process exits: gunicorn's workers exit through sys.exit."""
    aws.client("events")  # made now, so that the process freezes it with the rest of its start-up heap
    publishing = Publishing(relays=RelayThreads(sweeps=False), flusher=MetricsFlusher(threading.Event(), gauges=False))
    publishing.relays.start()
    publishing.flusher.start()
    atexit.register(publishing.stop)
    return publishing
