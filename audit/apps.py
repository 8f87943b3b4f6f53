from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        from eventbus import replay

        from . import selectors

        # The local replay path reads every envelope from here (docs/replay.md).
        replay.set_envelope_source(selectors.envelopes_between, fed_by="audit")
