from django.apps import AppConfig, apps
from django.db.models.signals import post_save
from django.utils.module_loading import autodiscover_modules


class EventbusConfig(AppConfig):
    name = "eventbus"
    verbose_name = "Event bus"

    def ready(self) -> None:
        from . import checks, outbox, postgresql, registry, signals, tasks  # noqa: F401 - checks registers a system check
        from .models import EventedModel

        postgresql.let_psycopg_cache_set_statements()
        postgresql.refuse_integers_out_of_range()
        # Subscriptions are declared in each app's handlers.py; importing them fills the registry.
        autodiscover_modules("handlers")
        registry.check_unique_handler_ids()
        # Outside a worker (which wakes its own relay thread), a commit wakes the relay with a task.
        outbox.set_task_relay_waker(tasks.wake_relay_by_task)
        for model in apps.get_models():
            if issubclass(model, EventedModel):
                post_save.connect(
                    signals.write_recorded_events, sender=model, dispatch_uid=f"outbox:{model._meta.label}"
                )
