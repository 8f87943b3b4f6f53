"""API clients, added beside the keys; 0004 moves each key and idempotency record onto one."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_order_order_email_upper_idx"),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiClient",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                (
                    "is_staff",
                    models.BooleanField(
                        default=False,
                        help_text="A staff client sees and cancels every client's orders.",
                        verbose_name="staff",
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={"verbose_name": "API client", "ordering": ["name"]},
        ),
        migrations.AddField(
            model_name="apikey",
            name="client",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="keys", to="orders.apiclient"
            ),
        ),
        migrations.AddField(
            model_name="idempotencykey",
            name="client",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, to="orders.apiclient"),
        ),
        migrations.AddField(
            model_name="order",
            name="api_client",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="orders",
                to="orders.apiclient",
                verbose_name="API client",
            ),
        ),
    ]
