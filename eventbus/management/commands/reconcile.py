"""Deliver again every event a subscribing service has not processed (docs/replay.md, "Reconciling")."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from eventbus import aws, replay


class Command(BaseCommand):
    help = (
        "Send every event published in the retention window (EVENT_ARCHIVE_RETENTION_DAYS) that a subscribing "
        "service has no ProcessedEvent for to that service's queue again. Safe to repeat: duplicates are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print what would be delivered; send nothing.")

    def handle(self, *args, dry_run: bool = False, **options):
        try:
            window = replay.retention_window()
            counts = replay.plan_reconciliation(window) if dry_run else replay.reconcile(window=window)
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(aws.explain(exc)) from None
        except replay.ReplayError as exc:
            raise CommandError(str(exc)) from None
        verb = "would deliver" if dry_run else "delivered"
        self.stdout.write(f"Reconcile {verb} {sum(counts.values())} unprocessed event(s) again.")
        for (service, detail_type), count in sorted(counts.items()):
            self.stdout.write(f"  {service:<14} {detail_type:<22} {count:>7}")
