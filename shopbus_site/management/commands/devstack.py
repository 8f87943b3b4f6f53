"""`make run`: the whole local stack in one foreground process that one Ctrl-C stops cleanly.

Starts moto's server on 127.0.0.1 as the AWS endpoint, migrates, provisions (moto keeps nothing, so
every start provisions), loads the demo catalogue, prints an admin login and a fresh API key, then
runs the Celery worker (with the event consumers), beat and the web server (gunicorn, as in
production) until interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from eventbus import outbox, topology
from inventory import services as inventory_services
from orders import services as order_services

LOCAL_CLIENT_NAME = "local stack (make run)"


def web_server_options(port: int) -> list[str]:
    """gunicorn as production runs it, on the loopback. Threads, because runserver's short listen queue
    reset connections once some 30 clients arrived together; two processes, so that one busy
    interpreter (the GIL) does not hold every request."""
    return [
        "shopbus_site.wsgi",
        f"--bind=127.0.0.1:{port}",
        "--worker-class=gthread",
        "--workers=2",
        "--threads=8",
        # Stop within devstack's 20 s wait for each child, requests in flight finished.
        "--graceful-timeout=10",
        "--access-logfile=-",
        # Nothing here uses gunicorn's control socket, and its one default path in the home directory
        # would be fought over by two stacks (make run and a bench) running at once.
        "--no-control-socket",
    ]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise CommandError(f"{url} did not answer within {timeout:.0f}s")


def _enable_state_machine_execution(endpoint: str) -> None:
    """moto runs state machines only when told to (docs/sagas.md, "On the local stack")."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


class Command(BaseCommand):
    help = "Run the whole local stack (local AWS, worker, beat, web) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--no-web", action="store_true", help="Start everything but the web server.")

    def handle(self, *args, no_web: bool = False, **options):
        if not settings.USES_LOCAL_AWS or not settings.AWS_ENDPOINT_URL.startswith("http://127.0.0.1:"):
            raise CommandError("devstack runs the local stack only; unset AWS_ENDPOINT_URL and AWS credentials.")
        for name, port in (("LOCAL_AWS_PORT", settings.LOCAL_AWS_PORT), ("WEB_PORT", settings.WEB_PORT)):
            if _port_in_use(port):
                raise CommandError(f"port {port} ({name}) is in use: stop what holds it, or set {name}=<free port>")
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            login, key = self._start()
            if not no_web:
                # whitenoise serves what collectstatic gathered once DEBUG is off: a second or two on each start.
                call_command("collectstatic", interactive=False, verbosity=0)
                self._spawn("web", [sys.executable, "-m", "gunicorn", *web_server_options(settings.WEB_PORT)])
                # Announced once it answers, so that the first request a user copies from below works.
                _wait_for_http(f"http://127.0.0.1:{settings.WEB_PORT}/healthz", timeout=60)
            self._announce(login, key)
            self._supervise()
        finally:
            self._stop_all()

    # --- start-up -----------------------------------------------------------------------------

    def _start(self) -> tuple[tuple[str, str], str]:
        self.stdout.write(f"Starting moto's server on 127.0.0.1:{settings.LOCAL_AWS_PORT} …")
        # Open for as long as the stack runs.
        self.local_aws_log = (settings.LOCAL_DIR / "local-aws.log").open("ab")
        self._spawn(
            "local-aws",
            [sys.executable, "-m", "shopbus_site.local_aws", "-H", "127.0.0.1", "-p", str(settings.LOCAL_AWS_PORT)],
            stdout=self.local_aws_log,
            stderr=subprocess.STDOUT,
            # moto's Step Functions calls EventBridge back through this port (ORDER_SAGA=stepfunctions).
            env={**os.environ, "MOTO_PORT": str(settings.LOCAL_AWS_PORT)},
        )
        _wait_for_http(f"{settings.AWS_ENDPOINT_URL}/moto-api/", timeout=30)
        _enable_state_machine_execution(settings.AWS_ENDPOINT_URL)
        # Children resolve settings afresh; pin them to this endpoint whatever their environment says.
        os.environ["AWS_ENDPOINT_URL"] = settings.AWS_ENDPOINT_URL
        call_command("migrate", interactive=False, verbosity=0)
        call_command("provision_aws", stdout=self.stdout)
        inventory_services.load_demo_catalogue()
        login = self._ensure_admin()
        key = self._local_api_key()
        outbox.relay_pending()  # anything committed while the stack was down goes out now
        celery = [sys.executable, "-m", "celery", "-A", "shopbus_site"]
        # DEBUG is for the web process's error pages; in the worker and beat it would only keep a query
        # log of every statement, CPU spent on every delivery (docs/performance.md).
        background = {**os.environ, "DEBUG": "false", "SECRET_KEY": settings.SECRET_KEY}
        self._spawn(
            "worker",
            celery
            + [
                "worker",
                "--loglevel=INFO",
                "--pool=threads",
                "--concurrency=4",
                "--without-mingle",
                "--without-gossip",
            ],
            env=background,
        )
        self._spawn(
            "beat",
            celery + ["beat", "--loglevel=INFO", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME],
            env=background,
        )
        return login, key

    def _announce(self, login: tuple[str, str], key: str) -> None:
        web = f"http://127.0.0.1:{settings.WEB_PORT}"
        self.stdout.write(
            self.style.SUCCESS(
                "\nshopbus is running.\n"
                f"  Admin:      {web}/admin/   login {login[0]} / {login[1]}\n"
                f"  API:        {web}/api/     key  {key}\n"
                f"  Local AWS:  {settings.AWS_ENDPOINT_URL}  (bus {topology.bus_name()})\n"
                f"  Saga:       {settings.ORDER_SAGA}\n"
                f"  Try:        curl -s -H 'Authorization: Bearer {key}' {web}/api/products\n"
                "Ctrl-C stops everything.\n"
            )
        )

    def _ensure_admin(self) -> tuple[str, str]:
        username = os.environ.get("LOCAL_ADMIN_USERNAME", "admin")
        password = os.environ.get("LOCAL_ADMIN_PASSWORD", "admin")
        user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": "admin@localhost"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return username, password

    def _local_api_key(self) -> str:
        # Keys are stored hashed, so the stack keeps its own key's plaintext under .local/ to show the
        # same one on every start.
        remembered_at = settings.LOCAL_DIR / "api-key"
        remembered = remembered_at.read_text().strip() if remembered_at.exists() else None
        plaintext = order_services.local_stack_key(client_name=LOCAL_CLIENT_NAME, remembered=remembered)
        if plaintext != remembered:
            remembered_at.touch(mode=0o600)
            remembered_at.write_text(plaintext + "\n")
        return plaintext

    # --- supervision --------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], **options) -> None:
        # A session of their own: the terminal's Ctrl-C reaches only this supervisor, which then
        # stops the children in order (moto last, so the worker can finish talking to it).
        process = subprocess.Popen(command, start_new_session=True, cwd=settings.BASE_DIR, **options)
        self.children.append((name, process))

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _supervise(self) -> None:
        while not self.stopping:
            for name, process in self.children:
                if process.poll() is not None:
                    raise CommandError(f"{name} exited with status {process.returncode}; stopping the stack")
            time.sleep(0.5)

    def _stop_all(self) -> None:
        if not getattr(self, "children", None):
            return
        self.stdout.write("\nStopping …")
        for name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"{name} did not stop in 20s; killing it")
                    process.kill()
                    process.wait()
        self.children = []
        self.stdout.write("Stopped.")
