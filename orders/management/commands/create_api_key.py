from django.core.management.base import BaseCommand

from orders import services


class Command(BaseCommand):
    help = "Create an API key for a client application. The key is printed once and stored hashed."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Who the key is for, e.g. 'mobile app'.")

    def handle(self, *args, name: str, **options):
        api_key, plaintext = services.create_api_key(name=name)
        self.stderr.write(f"API key {api_key.prefix} for {api_key.name!r} (shown once, store it now):")
        self.stdout.write(plaintext)
