from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.utils.dateparse import parse_datetime

from eventbus.rows import insert_rows

from .models import AuditEvent


@dataclass(frozen=True)
class Envelope:
    event_id: UUID
    source: str
    detail_type: str
    correlation_id: str
    occurred_at: str
    envelope: dict[str, Any]


def record_envelopes(*, envelopes: list[Envelope]) -> None:
    """Keep each envelope as delivered. The first record of an event id stands: a later copy (a replay,
    a redelivery) is skipped by the same INSERT, never overwritten. Audit writes a row for every event,
    so a receive's envelopes are one hand-built statement rather than the ORM's (eventbus/rows.py), in
    event-id order so that concurrent writers meet on the unique index in one order."""
    first_of_each = {envelope.event_id: envelope for envelope in reversed(envelopes)}
    rows = [
        {
            "event_id": envelope.event_id,
            "source": envelope.source,
            "detail_type": envelope.detail_type,
            "correlation_id": envelope.correlation_id,
            "occurred_at": parse_datetime(envelope.occurred_at),
            "envelope": envelope.envelope,
        }
        for _, envelope in sorted(first_of_each.items())
    ]
    insert_rows(AuditEvent, rows, conflict=["event_id"])
