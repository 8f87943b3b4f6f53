from django.core.management.base import BaseCommand, CommandError

from orders import services


class Command(BaseCommand):
    help = (
        "Create an API client with its first key (--name), or issue another key to an existing client "
        "(--client) to rotate keys. The key is printed once on stdout and stored hashed."
    )

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--name", help="A new client application, e.g. 'mobile app'.")
        who.add_argument("--client", help="An existing client's name: add a key to it (then revoke the old one).")
        parser.add_argument(
            "--staff", action="store_true", help="A new client that sees and cancels every client's orders."
        )

    def handle(self, *args, name: str | None, client: str | None, staff: bool, **options):
        if client is not None:
            if staff:
                raise CommandError("--staff applies to a new client (--name); change a client in the admin.")
            try:
                existing = services.find_api_client(name=client)
            except services.UnknownApiClient as exc:
                raise CommandError(str(exc)) from exc
            api_key, plaintext = services.issue_api_key(client=existing)
            self.stderr.write(f"New key {api_key.prefix} for {existing.name!r} (shown once, store it now):")
        else:
            try:
                new_client, plaintext = services.create_api_client(name=name, is_staff=staff)
            except services.ApiClientExists as exc:
                raise CommandError(f"{exc} (--client {name!r})") from exc
            kind = "staff client" if staff else "client"
            self.stderr.write(f"Key for the new {kind} {new_client.name!r} (shown once, store it now):")
        self.stdout.write(plaintext)
