from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from eventbus import replay

        from . import services

        # Analytics holds only aggregates of events, so it can be rebuilt by replaying them.
        replay.register_rebuilder("analytics", services.clear_window)
