"""Replay archived events to chosen services, and follow or cancel replays (docs/replay.md)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from eventbus import aws, registry, replay, selectors, topology

FINAL_STATES = {"COMPLETED", "CANCELLED", "FAILED"}


def _time(value: str, flag: str) -> datetime:
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well formed, but no such time (2026-02-30)
        parsed = None
    if parsed is None:
        raise CommandError(f"{flag} {value!r} is not an ISO-8601 time, e.g. 2026-11-26T08:00:00Z")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _refusal(exc: BotoCoreError | ClientError | replay.ReplayError) -> str:
    return aws.explain(exc) if isinstance(exc, BotoCoreError | ClientError) else str(exc)


class Command(BaseCommand):
    help = (
        "replay --service S [--service S2 …] | --all --from T1 --to T2 [--dry-run] [--wait] [--rebuild]: replay "
        "archived events to services (on AWS from the archive; locally from the audit store). "
        "replay list | status NAME | cancel NAME."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", nargs="?", choices=["list", "status", "cancel"], help="Instead of replaying.")
        parser.add_argument("name", nargs="?", help="The replay, for status and cancel.")
        parser.add_argument("--service", action="append", default=[], help="A service to replay to (repeatable).")
        parser.add_argument("--all", action="store_true", help="Every consuming service.")
        parser.add_argument("--from", dest="start", help="Start of the window, ISO-8601 (UTC unless it says).")
        parser.add_argument("--to", dest="end", help="End of the window (exclusive), ISO-8601.")
        parser.add_argument("--dry-run", action="store_true", help="Print what would be replayed; change nothing.")
        parser.add_argument("--wait", action="store_true", help="Follow the replay to its end.")
        parser.add_argument("--rebuild", action="store_true", help="Clear a derived service's state first.")
        parser.add_argument("--replay-name", dest="replay_name", help="Name the replay (default: generated).")

    def handle(self, *args, action: str | None, name: str | None, **options):
        try:
            if action == "list":
                self.list_replays()
            elif action in ("status", "cancel"):
                if not name:
                    raise CommandError(f"replay {action} needs the replay's name")
                if action == "status":
                    self.status(name)
                else:
                    self.cancel(name)
            else:
                self.replay(**options)
        except (BotoCoreError, ClientError, replay.ReplayError) as exc:
            raise CommandError(_refusal(exc)) from None

    # --- replaying ---------------------------------------------------------------------------------

    def replay(self, *, service, all, start, end, dry_run, wait, rebuild, replay_name, **options) -> None:
        if bool(service) == bool(all):
            raise CommandError("choose the services: --service S (repeatable) or --all")
        if not start or not end:
            raise CommandError("a replay needs a window: --from T1 --to T2")
        services = replay.check_services(registry.services() if all else service)
        window = replay.Window(_time(start, "--from"), _time(end, "--to"))
        if rebuild:
            if len(services) != 1:
                raise CommandError("--rebuild takes exactly one --service")
            if services[0] not in replay.rebuildable_services():
                replay.clear_for_rebuild(service=services[0], window=window)  # raises with the reason
            window = window.to_whole_hours()
            replay.check_rebuild_window(window)
        path = "archive" if replay.uses_archive_replay() else "audit store"
        name = replay_name or replay.default_name(services)
        self.stdout.write(
            f"Replay {name} ({'dry run, ' if dry_run else ''}path: {path}) of "
            f"{window.start.isoformat()} to {window.end.isoformat()} for {', '.join(services)}"
            + (" (window widened to whole hours for the rebuild)" if rebuild else "")
        )
        counts = replay.plan(services=services, window=window)
        self.print_counts(counts)
        if dry_run:
            self.stdout.write("Dry run: nothing was replayed or cleared.")
            return
        if rebuild:
            forgotten = replay.clear_for_rebuild(service=services[0], window=window)
            self.stdout.write(f"Cleared {services[0]}'s state for the window and {forgotten} dedupe record(s).")
        try:
            self.send(services=services, window=window, name=name)
        except (BotoCoreError, ClientError, replay.ReplayError) as exc:
            if not rebuild:
                raise
            raise CommandError(
                f"{_refusal(exc)}. {services[0]}'s state for the window was cleared and not refilled: run the same "
                f"replay again (on AWS under another --replay-name)"
            ) from None
        if wait:
            if replay.uses_archive_replay():
                self.follow(name, window)
            else:
                self.drain(services)

    def send(self, *, services: list[str], window: replay.Window, name: str) -> None:
        if replay.uses_archive_replay():
            response = replay.start_aws_replay(services=services, window=window, name=name)
            self.stdout.write(f"Started {response['ReplayArn']} ({response['State']}).")
        else:
            sent = replay.replay_locally(services=services, window=window, name=name)
            self.stdout.write(f"Sent {sum(sent.values())} event(s) from the audit store to the services' queues.")

    def print_counts(self, counts: Counter) -> None:
        if not counts:
            self.stdout.write("  no event in the window matches these services")
            return
        self.stdout.write(f"  {'service':<14} {'detail-type':<22} {'events':>7}")
        for (service, detail_type), count in sorted(counts.items()):
            self.stdout.write(f"  {service:<14} {detail_type:<22} {count:>7}")
        self.stdout.write(f"  {'total':<37} {sum(counts.values()):>7}")

    def follow(self, name: str, window: replay.Window) -> None:
        events = aws.client("events")
        span = (window.end - window.start).total_seconds()
        while True:
            described = events.describe_replay(ReplayName=name)
            last = described.get("EventLastReplayedTime")
            progress = f", {100 * (last - window.start).total_seconds() / span:.0f}% of the window" if last else ""
            self.stdout.write(f"  {described['State']}{progress}")
            if described["State"] in FINAL_STATES:
                if described["State"] != "COMPLETED":
                    raise CommandError(f"replay {name} {described['State']}: {described.get('StateReason', '')}")
                return
            time.sleep(5)

    def drain(self, services: list[str]) -> None:
        """Locally, the replay is sent at once; --wait follows the services' queues until they are empty."""
        queues = [topology.SERVICE_QUEUES[service].name for service in services]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            waiting = sum(sum(selectors.message_counts(queue)) for queue in queues)
            self.stdout.write(f"  {waiting} message(s) still queued")
            if not waiting:
                self.stdout.write("Replay delivered: the services' queues are empty.")
                return
            time.sleep(2)
        raise CommandError("the services' queues did not drain within 5 minutes; is a worker consuming them?")

    # --- following replays -------------------------------------------------------------------------

    def list_replays(self) -> None:
        replays = aws.client("events").list_replays(EventSourceArn=replay.archive_arn()).get("Replays", [])
        if not replays:
            local = "" if replay.uses_archive_replay() else " Local replays from the audit store finish as they run."
            self.stdout.write(f"No replay of the archive.{local}")
        for item in replays:
            self.stdout.write(f"{item['ReplayName']:<50} {item['State']:<12} {item.get('ReplayStartTime', '')}")

    def status(self, name: str) -> None:
        described = aws.client("events").describe_replay(ReplayName=name)
        for key in ("ReplayName", "State", "StateReason", "EventStartTime", "EventEndTime", "EventLastReplayedTime"):
            if described.get(key):
                self.stdout.write(f"{key}: {described[key]}")

    def cancel(self, name: str) -> None:
        state = aws.client("events").cancel_replay(ReplayName=name)["State"]
        self.stdout.write(f"Replay {name}: {state}.")
