from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from eventbus import provisioning

        from .alarms import AlarmProvisioning

        # provision_aws creates and removes the alarms with everything else; the plumbing does not
        # import this room, so the room registers itself.
        provisioning.register_extension(AlarmProvisioning())
