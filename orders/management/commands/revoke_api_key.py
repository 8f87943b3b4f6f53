from django.core.management.base import BaseCommand, CommandError

from orders import services


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (the 8 characters after 'sb_'). Its client keeps its orders."

    def add_arguments(self, parser):
        parser.add_argument("prefix")

    def handle(self, *args, prefix: str, **options):
        try:
            api_key = services.revoke_api_key(prefix=prefix)
        except services.UnknownApiKey as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Revoked key {api_key.prefix} of {api_key.client.name!r}.")
