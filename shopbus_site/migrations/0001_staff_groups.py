"""The starter staff groups. Support answers customers: it sees everything and may cancel an order.
Warehouse ships orders and restocks products, and sees what it needs for that. Add people to a group
in the admin (Users); change a group's permissions there too, since this migration runs once."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SHOPBUS_APPS = ("eventbus", "inventory", "orders", "payments", "notifications", "analytics", "audit", "sagas")

SUPPORT = {"cancel_order"}
WAREHOUSE = {
    "ship_order",
    "restock_product",
    "view_order",
    "view_orderline",
    "view_product",
    "view_stockitem",
    "view_reservation",
    "view_reservationline",
}


def create_starter_groups(apps, schema_editor):
    # Permissions are otherwise created after every migration has run; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ours = Permission.objects.filter(content_type__app_label__in=SHOPBUS_APPS)
    support, _ = Group.objects.get_or_create(name="Support")
    support.permissions.add(*ours.filter(codename__startswith="view_"), *ours.filter(codename__in=SUPPORT))
    warehouse, _ = Group.objects.get_or_create(name="Warehouse")
    warehouse.permissions.add(*ours.filter(codename__in=WAREHOUSE))


def remove_starter_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Support", "Warehouse"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("eventbus", "0005_sweep_failures_and_claim_owner"),
        ("inventory", "0003_staff_permissions"),
        ("orders", "0007_staff_permissions"),
        ("payments", "0002_gateway_calls_outside_transactions"),
        ("notifications", "0002_correlation_id_as_long_as_the_schema_allows"),
        ("analytics", "0001_initial"),
        ("audit", "0002_correlation_id_as_long_as_the_schema_allows"),
        ("sagas", "0001_reply_outbox"),
    ]

    operations = [migrations.RunPython(create_starter_groups, remove_starter_groups)]
