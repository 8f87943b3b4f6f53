"""Audit reads: the envelopes shopbus saw, verbatim, for replay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from .models import AuditEvent


def envelopes_between(start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    """Envelopes whose producer's occurredAt is in [start, end), oldest first, read in chunks."""
    rows = AuditEvent.objects.filter(occurred_at__gte=start, occurred_at__lt=end).order_by("occurred_at", "id")
    yield from rows.values_list("envelope", flat=True).iterator(chunk_size=500)
