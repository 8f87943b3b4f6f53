"""The local stack as `make run` starts it (manage.py devstack), in a subprocess of its own on free ports
with its own SQLite database, for tests that drive it from outside: a browser, HTTP, boto3.

Nothing here imports Django's models: the stack is another process with another database, reached
only through its web server and its local AWS endpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Banner:
    admin_username: str
    admin_password: str
    api_key: str


class LocalStack:
    """`manage.py devstack` started with `start()`, stopped with `stop()` (SIGINT, as Ctrl-C stops it)."""

    def __init__(self, *, log_path: Path, settings: dict[str, str] | None = None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="shopbus-stack-"))
        self.web_port, self.aws_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.aws_endpoint = f"http://127.0.0.1:{self.aws_port}"
        self.log_path = log_path
        self.env = {
            # The caller's AWS credentials would point devstack at real AWS; it refuses to run then.
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))},
            # pytest-django set tests.settings in this process; the stack runs the product's settings.
            "DJANGO_SETTINGS_MODULE": "shopbus_site.settings",
            "DATABASE_URL": f"sqlite:///{self.workdir / 'db.sqlite3'}",
            "LOCAL_DIR": str(self.workdir / "local"),
            "WEB_PORT": str(self.web_port),
            "LOCAL_AWS_PORT": str(self.aws_port),
            "CELERY_BEAT_SCHEDULE_FILENAME": str(self.workdir / "beat-schedule"),
            # Four slashes: django-environ drops one, and the path must stay absolute.
            "EMAIL_URL": f"filemail:///{self.workdir / 'emails'}",
            **(settings or {}),
        }
        self.process: subprocess.Popen | None = None
        self.banner: Banner | None = None

    def start(self, timeout: float = 180) -> Banner:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "devstack"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the local stack exited early (status {self.process.returncode}); see {self.log_path}"
                )
            # The full announcement, once the web server answers and the worker consumes; devstack says
            # the login and key earlier too, before either is up, so that earlier line is not enough.
            text = self.log_path.read_text().partition("shopbus is running.")[2]
            key, login = re.search(r"key\s+(sb_\S+)", text), re.search(r"login (\S+) / (\S+)\n", text)
            if key and login:
                self.banner = Banner(login.group(1), login.group(2), key.group(1))
                self.get_json("/healthz")
                return self.banner
            time.sleep(0.25)
        raise RuntimeError(f"the local stack did not come up in {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- talking to it ------------------------------------------------------------------------

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        """The JSON API with the stack's own key."""
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.banner.api_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=10) as response:
            return json.loads(response.read())

    def boto3_client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def manage(self, *args: str) -> str:
        """A management command against the stack's database and endpoint."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, "AWS_ENDPOINT_URL": self.aws_endpoint},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
