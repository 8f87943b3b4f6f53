import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_keys_become_clients"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="idempotencykey", name="idempotency_key_once_per_client"),
        migrations.RemoveField(model_name="idempotencykey", name="api_key"),
        migrations.AlterField(
            model_name="idempotencykey",
            name="client",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="orders.apiclient"),
        ),
        migrations.AddConstraint(
            model_name="idempotencykey",
            constraint=models.UniqueConstraint(fields=("client", "key"), name="idempotency_key_once_per_client"),
        ),
        migrations.RemoveField(model_name="apikey", name="name"),
        migrations.AlterField(
            model_name="apikey",
            name="client",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="keys", to="orders.apiclient"
            ),
        ),
        migrations.AlterModelOptions(name="apikey", options={"ordering": ["-created_at"], "verbose_name": "API key"}),
    ]
