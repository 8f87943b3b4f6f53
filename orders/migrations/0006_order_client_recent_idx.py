from django.db import migrations, models

from eventbus.migration_operations import AddIndexConcurrently


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("orders", "0005_api_clients_required"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="order",
            index=models.Index(fields=["api_client", "-created_at", "-id"], name="order_client_recent_idx"),
        ),
    ]
