from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Order saga (Step Functions)"

    def ready(self) -> None:
        from eventbus import provisioning

        from .provisioning import StateMachineProvisioning

        # The room registers itself: provision_aws applies the state machine with everything else,
        # and the plumbing never imports this room.
        provisioning.register_extension(StateMachineProvisioning())
