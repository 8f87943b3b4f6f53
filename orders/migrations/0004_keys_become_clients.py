"""Orders and idempotency records belong to an API client, which can hold several keys (rotation).

Each existing key becomes a client of its own, keeping its name; its idempotency records move to that
client, and the orders they name are the client's. Other existing orders have no known client: only
staff clients and the admin see them. (Data apart from schema: PostgreSQL refuses to alter a table
with pending deferred-constraint checks in the same transaction.)"""

from django.db import migrations


def keys_become_clients(apps, schema_editor):
    ApiClient = apps.get_model("orders", "ApiClient")
    ApiKey = apps.get_model("orders", "ApiKey")
    IdempotencyKey = apps.get_model("orders", "IdempotencyKey")
    Order = apps.get_model("orders", "Order")
    taken: set[str] = set()
    for api_key in ApiKey.objects.order_by("pk"):
        name = api_key.name if api_key.name not in taken else f"{api_key.name} ({api_key.prefix})"
        taken.add(name)
        client = ApiClient.objects.create(name=name[:100], created_at=api_key.created_at)
        api_key.client = client
        api_key.save(update_fields=["client"])
    for record in IdempotencyKey.objects.select_related("api_key").order_by("pk"):
        record.client_id = record.api_key.client_id
        record.save(update_fields=["client"])
        # Historical models carry no signals, so this records no event: ownership is not a domain fact.
        Order.objects.filter(pk=record.order_id, api_client__isnull=True).update(api_client_id=record.client_id)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0003_api_clients"),
    ]

    operations = [
        migrations.RunPython(keys_become_clients, migrations.RunPython.noop),
    ]
