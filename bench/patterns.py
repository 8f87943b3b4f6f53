"""How fast the offline pattern engine filters events: event x pattern checks per second for shopbus's
own rule patterns (both coordinators) against one sample event of every type, as replay's dry run and
local path use it. Prints figures; asserts nothing.

    .venv/bin/python bench/patterns.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from eventbus import event_types, registry  # noqa: E402
from eventbus.patterns import compile_pattern, matches  # noqa: E402
from tests.events import SAMPLE_DATA, detail  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    seconds = parser.parse_args().seconds
    events = [
        {
            "version": "0",
            "id": "bench",
            "source": t.source,
            "detail-type": t.detail_type,
            "account": "123456789012",
            "time": "2026-11-26T08:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail(SAMPLE_DATA[t.detail_type]),
        }
        for t in event_types.ALL_EVENT_TYPES
    ]
    patterns = []
    for coordinator in ("choreography", "stepfunctions"):
        settings.ORDER_SAGA = coordinator
        patterns += [compile_pattern(registry.event_pattern(service)) for service in registry.services()]
    pairs = [(pattern, event) for pattern in patterns for event in events]
    checks, matched, started = 0, 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for pattern, event in pairs:
            matched += matches(pattern, event)
        checks += len(pairs)
    elapsed = time.perf_counter() - started
    print(f"patterns: {len(patterns)} (shopbus's rules under both coordinators), events: {len(events)} (one per type)")
    print(f"checks: {checks} in {elapsed:.2f} s, {matched / (checks / len(pairs)):.0f} matches per pass")
    print(f"event x pattern checks per second: {checks / elapsed:,.0f}")


if __name__ == "__main__":
    main()
