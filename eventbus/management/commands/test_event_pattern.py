"""Check an event against an EventBridge pattern offline, with shopbus's pattern engine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from eventbus.patterns import InvalidEventPattern, matches, validate_pattern


def _read(value: str, what: str):
    if value.startswith("@"):
        try:
            value = Path(value[1:]).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read the {what} file: {exc}") from None
    return value


class Command(BaseCommand):
    help = (
        "Print true or false: does the event match the pattern? Each is JSON text or @file. An invalid "
        "pattern prints the reason and exits 2. Needs no AWS endpoint."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pattern", required=True, help="The event pattern: JSON text or @path/to/file.json.")
        parser.add_argument("--event", required=True, help="The event: JSON text or @path/to/file.json.")

    def handle(self, *args, pattern: str, event: str, **options):
        pattern_text, event_text = _read(pattern, "pattern"), _read(event, "event")
        try:
            validate_pattern(pattern_text)
        except InvalidEventPattern as exc:
            self.stderr.write(str(exc))
            sys.exit(2)
        try:
            parsed_event = json.loads(event_text)
        except ValueError as exc:
            raise CommandError(f"the event is not valid JSON: {exc}") from None
        self.stdout.write("true" if matches(pattern_text, parsed_event) else "false")
