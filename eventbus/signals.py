from . import outbox


def write_recorded_events(sender, instance, **kwargs) -> None:
    outbox.write_recorded_events(instance=instance)
