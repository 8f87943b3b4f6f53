from . import services


def write_recorded_events(sender, instance, **kwargs) -> None:
    services.write_recorded_events(instance=instance)
