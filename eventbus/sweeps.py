"""One bad row never stops a sweep.

A periodic sweep (the outbox relay, the saga-reply sweep, the stuck-order sweep …) handles each item
on its own, in its own transaction. An item whose handling raises is skipped, counted in the
SweepItemFailed metric every time, and remembered as a SweepFailure row, so the sweep logs it at
ERROR once, with its id and traceback, rather than every pass forever; later passes log it at DEBUG.
The row goes when the item succeeds, and a later failure is logged again (docs/observability.md,
"A sweep skips an item").

A database that is down or locked is no row's fault: those errors stop the sweep, whose next run
starts over, rather than mark every item it meets as bad.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, models, transaction
from django.db.models import F
from django.utils import timezone

from . import metrics
from .models import SweepFailure

logger = logging.getLogger(__name__)

OUTAGES = (OperationalError, InterfaceError)
BATCH_SIZE = 1000  # rows a bulk-delete sweep deletes per transaction
Row = TypeVar("Row", bound=models.Model)


class Sweep:
    def __init__(self, name: str) -> None:
        self.name = name
        self._failing: set[str] | None = None

    def _known_failures(self) -> set[str]:
        if self._failing is None:
            self._failing = set(SweepFailure.objects.filter(sweep=self.name).values_list("item", flat=True))
        return self._failing

    @contextmanager
    def item(self, item: Any, *, clears: bool = True) -> Iterator[None]:
        """Run the block for one item; if it raises, record the failure and carry on after the block.
        With `clears`, success forgets an earlier failure of the item (a step that is not the whole of
        the item's handling, such as loading it, passes clears=False)."""
        try:
            yield
        except OUTAGES:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, logged and counted; the sweep goes on
            self.failed(item, exc)
        else:
            if clears and str(item) in self._known_failures():
                self._forget(str(item))

    def failed(self, item: Any, exc: BaseException) -> None:
        item = str(item)
        metrics.record_sweep_failure(sweep=self.name)
        error = f"{type(exc).__name__}: {exc}"
        first = self._remember(item, error)
        if first:
            logger.error(
                "sweep %s: %s failed and is skipped until it succeeds (SweepFailure, counted in SweepItemFailed): %s",
                self.name,
                item,
                error,
                exc_info=exc,
            )
        else:
            logger.debug("sweep %s: %s failed again and is skipped: %s", self.name, item, error)

    def _remember(self, item: str, error: str) -> bool:
        """Record the failure; True when the item was not failing already."""
        try:
            with transaction.atomic():
                now = timezone.now()
                updated = SweepFailure.objects.filter(sweep=self.name, item=item).update(
                    error=error, failures=F("failures") + 1, last_failed_at=now
                )
                if not updated:
                    SweepFailure.objects.create(sweep=self.name, item=item[:200], error=error)
        except IntegrityError:  # another process recorded it first
            return False
        except DatabaseError:
            # Nowhere to remember it: say so every time rather than never.
            return True
        self._known_failures().add(item)
        return not updated

    def _forget(self, item: str) -> None:
        SweepFailure.objects.filter(sweep=self.name, item=item).delete()
        self._known_failures().discard(item)
        logger.info("sweep %s: %s succeeded again", self.name, item)

    def load(self, queryset: models.QuerySet[Row], ids: Iterable[Any]) -> list[Row]:
        """The rows with these ids, in this order, leaving out (and recording) any that cannot be read."""
        ids = list(ids)
        try:
            by_id = queryset.in_bulk(ids)
        except OUTAGES:
            raise
        except Exception:  # noqa: BLE001 - each row is read alone below, which records the bad one
            # Some row cannot be read: read them one by one to find it.
            by_id = {}
            for pk in ids:
                with self.item(pk, clears=False):
                    by_id[pk] = queryset.get(pk=pk)
        return [by_id[pk] for pk in ids if pk in by_id]


def delete_in_batches(*, sweep: str, queryset: models.QuerySet) -> int:
    """Delete what `queryset` selects, a batch of primary keys at a time, each batch in its own
    transaction, so a long purge never holds one huge transaction. The deletes read no row's content
    (only ids), so no row can poison them; a batch that fails anyway is recorded and skipped."""
    failures = Sweep(sweep)
    deleted = 0
    last = None
    while True:
        page = queryset.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        ids = list(page.values_list("pk", flat=True)[:BATCH_SIZE])
        if not ids:
            return deleted
        last = ids[-1]
        with failures.item(f"{queryset.model._meta.label} ids {ids[0]}..{ids[-1]}"), transaction.atomic():
            deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]
