from __future__ import annotations

from typing import Any
from uuid import UUID

from django.utils.dateparse import parse_datetime

from .models import AuditEvent


def record_envelope(
    *, event_id: UUID, source: str, detail_type: str, correlation_id: str, occurred_at: str, envelope: dict[str, Any]
) -> AuditEvent:
    event, _ = AuditEvent.objects.get_or_create(
        event_id=event_id,
        defaults={
            "source": source,
            "detail_type": detail_type,
            "correlation_id": correlation_id,
            "occurred_at": parse_datetime(occurred_at),
            "envelope": envelope,
        },
    )
    return event
