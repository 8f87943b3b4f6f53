"""Each long-running process of the stack freezes what it built while starting (shopbus_site.heap)."""

from __future__ import annotations

import gc
import subprocess
import sys

import moto.server
import pytest
from celery.signals import beat_init, worker_ready
from django.conf import settings
from werkzeug.test import Client

from shopbus_site.local_aws import FREEZE_HEAP_PATH, LAUNCH_TOKEN_PATH, add_stack_routes


@pytest.fixture
def thawed():
    """Nothing of the test process is frozen before the test, nor left frozen after it."""
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize("started", [worker_ready, beat_init], ids=["worker", "beat"])
def test_a_worker_or_beat_freezes_its_heap_once_started(thawed, started):
    started.send(sender=None)

    assert gc.get_freeze_count() > 0


def test_the_web_application_freezes_its_heap_once_loaded():
    probe = "import gc, shopbus_site.wsgi; print(gc.get_freeze_count())"

    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=settings.BASE_DIR, capture_output=True, text=True, check=True
    )

    assert int(loaded.stdout) > 10_000  # Django and every app, not a handful of objects


def test_the_local_endpoint_freezes_its_heap_when_the_stack_has_provisioned(thawed, monkeypatch):
    monkeypatch.setattr(moto.server, "DomainDispatcherApplication", moto.server.DomainDispatcherApplication)
    add_stack_routes("this-launch")
    endpoint = Client(moto.server.DomainDispatcherApplication(moto.server.create_backend_app))

    assert endpoint.get(LAUNCH_TOKEN_PATH).text == "this-launch"
    assert gc.get_freeze_count() == 0
    frozen = endpoint.post(FREEZE_HEAP_PATH)

    assert (frozen.status_code, frozen.text) == (200, "frozen")
    assert gc.get_freeze_count() > 0
