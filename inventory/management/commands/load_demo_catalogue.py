from django.core.management.base import BaseCommand

from inventory import services


class Command(BaseCommand):
    help = "Create the demo products (prod-1 Laptop, prod-2 Mouse, prod-3 Keyboard, …) that are missing."

    def handle(self, *args, **options):
        created = services.load_demo_catalogue()
        self.stdout.write(f"Created {len(created)} product(s)." if created else "The demo catalogue is already there.")
