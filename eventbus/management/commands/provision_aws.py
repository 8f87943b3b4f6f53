from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from eventbus import aws
from eventbus.patterns import InvalidEventPattern
from eventbus.provisioning import Provisioner


class Command(BaseCommand):
    help = "Create or update the bus, rules, queues, DLQs, queue policies, archive and dashboard. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print the plan and change nothing.")

    def handle(self, *args, dry_run: bool = False, **options):
        try:
            changes = Provisioner(dry_run=dry_run).apply()
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(aws.explain(exc)) from None
        except InvalidEventPattern as exc:
            raise CommandError(f"refusing to provision: {exc}") from None
        for change in changes:
            self.stdout.write(("would " if dry_run else "") + str(change))
        if not changes:
            self.stdout.write(self.style.SUCCESS("No changes: everything is provisioned."))
        elif dry_run:
            self.stdout.write(self.style.WARNING(f"Dry run: {len(changes)} change(s) planned, none applied."))
        else:
            self.stdout.write(self.style.SUCCESS(f"{len(changes)} change(s) applied."))
