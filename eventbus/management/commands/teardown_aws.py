from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from eventbus import aws, topology
from eventbus.provisioning import Action, Provisioner


class Command(BaseCommand):
    help = "Remove exactly what provision_aws made. Asks first unless given --yes."

    def add_arguments(self, parser):
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument("--dry-run", action="store_true", help="Print what would be removed.")

    def handle(self, *args, yes: bool = False, dry_run: bool = False, **options):
        try:
            plan = Provisioner(dry_run=True).teardown()
            removals = [change for change in plan if change.action == Action.DELETE]
            for change in plan:
                self.stdout.write(("would " if change.action == Action.DELETE else "") + str(change))
            if not removals:
                self.stdout.write("Nothing to remove.")
                return
            if dry_run:
                return
            if not yes:
                answer = input(f"Remove these {len(removals)} resources of bus {topology.bus_name()}? Type 'yes': ")
                if answer.strip().lower() != "yes":
                    raise CommandError("Teardown cancelled; nothing was removed.")
            done = Provisioner(dry_run=False).teardown()
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(aws.explain(exc)) from None
        except EOFError:
            raise CommandError("No answer on standard input; pass --yes to remove without asking.") from None
        self.stdout.write(self.style.SUCCESS(f"Removed {sum(c.action == Action.DELETE for c in done)} resource(s)."))
