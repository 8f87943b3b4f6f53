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
    a redelivery, or a second copy in the same list) is skipped by the same INSERT, never overwritten.
    Audit writes a row for every event, so a receive's envelopes are one hand-built statement rather
    than the ORM's (eventbus/rows.py), in event-id order so that concurrent writers meet on the unique
    index in one order; the sort is stable, so a first copy stays ahead of its later ones."""
    rows = [
        {
            "event_id": envelope.event_id,
            "source": envelope.source,
            "detail_type": envelope.detail_type,
            "correlation_id": envelope.correlation_id,
            "occurred_at": parse_datetime(envelope.occurred_at),
            "envelope": envelope.envelope,
        }
        for envelope in sorted(envelopes, key=lambda envelope: envelope.event_id)
    ]
    insert_rows(AuditEvent, rows, conflict=["event_id"])
