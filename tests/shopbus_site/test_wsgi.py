"""The web application publishes what its requests commit itself, unless OUTBOX_RELAY_IN_WEB says no."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

PROBE = """
import time
import shopbus_site.wsgi
from eventbus import outbox

deadline = time.monotonic() + 10
while outbox._this_process_relay() is None and time.monotonic() < deadline:
    time.sleep(0.01)
print(outbox._this_process_relay() is not None)
"""


@pytest.mark.parametrize(("setting", "relays"), [(None, "True"), ("false", "False")], ids=["default", "turned off"])
def test_the_web_application_runs_relay_threads_of_its_own_unless_told_not_to(setting, relays):
    environment = {key: value for key, value in os.environ.items() if key != "OUTBOX_RELAY_IN_WEB"}
    if setting is not None:
        environment["OUTBOX_RELAY_IN_WEB"] = setting

    loaded = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (loaded.returncode, loaded.stdout.strip()) == (0, relays), loaded.stderr
