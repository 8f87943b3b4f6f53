from __future__ import annotations

from typing import Any
from uuid import UUID

from django.utils.dateparse import parse_datetime

from eventbus.rows import insert_rows

from .models import AuditEvent


def record_envelope(
    *, event_id: UUID, source: str, detail_type: str, correlation_id: str, occurred_at: str, envelope: dict[str, Any]
) -> None:
    """Keep the envelope as delivered. The first record of an event id stands: a later copy (a replay,
    a redelivery) is skipped by the same single INSERT, never overwritten. Audit writes a row for every
    event, so this is one hand-built statement rather than the ORM's (eventbus/rows.py)."""
    row = {
        "event_id": event_id,
        "source": source,
        "detail_type": detail_type,
        "correlation_id": correlation_id,
        "occurred_at": parse_datetime(occurred_at),
        "envelope": envelope,
    }
    insert_rows(AuditEvent, [row], conflict=["event_id"])
