"""Driving the saga in-process for tests: deliver every published outbox row to every service that
subscribes to it, through the real consumer path, until nothing is left to deliver."""

from __future__ import annotations

from eventbus import registry
from eventbus.consuming import handle_message
from eventbus.models import OutboxEvent
from tests.events import delivery_of


def run_until_quiet(*, max_rounds: int = 20) -> int:
    """Returns the number of deliveries made. Rows are marked published as they are delivered."""
    delivered = 0
    for _ in range(max_rounds):
        rows = list(OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).order_by("created_at"))
        if not rows:
            return delivered
        for row in rows:
            row.status = OutboxEvent.Status.PUBLISHED
            row.save(update_fields=["status"])
            for service in registry.services():
                if registry.subscription_for(service, row.source, row.detail_type):
                    outcome = handle_message(service=service, body=delivery_of(row))
                    assert outcome.acknowledged, (service, row.detail_type, outcome.note)
                    delivered += 1
    raise AssertionError("the saga did not settle")
