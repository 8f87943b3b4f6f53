"""gunicorn as `make run` and production run it (devstack.web_server_options)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from django.conf import settings

from shopbus_site.management.commands.devstack import web_server_options
from tests.local_stack import free_port


def test_a_request_line_as_long_as_the_contract_allows_reaches_the_application():
    """The list's filters may each be 200 characters; 4-byte characters, percent-encoded, make a line
    of about 5,000 bytes, past gunicorn's default limit (an HTML 414 that never reached Django)."""
    port = free_port()
    environment = {**os.environ, "OUTBOX_RELAY_IN_WEB": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *web_server_options(port)],
        cwd=settings.BASE_DIR,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    filler = "%F0%9F%98%80" * 200
    url = f"http://127.0.0.1:{port}/healthz?customerId={filler}&cursor={filler}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = response.status
                break
            except urllib.error.HTTPError as exc:
                status = exc.code
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert status == 200
