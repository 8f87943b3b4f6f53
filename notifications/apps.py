from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from . import services, tasks

        # The service hands committed notifications to the task; registering it here keeps the
        # service from importing the task module that imports it.
        services.set_sender(tasks.send_notification.delay)
