"""`make run`: the whole local stack in one foreground process that one Ctrl-C stops cleanly.

Starts moto's server on 127.0.0.1 as the AWS endpoint, migrates, provisions (moto keeps nothing, so
every start provisions), loads the demo catalogue, delivers again whatever a service never processed
(the queues that held it died with the last moto), prints an admin login and a fresh API key, then
runs the Celery worker (with the event consumers), beat and the web server (gunicorn, as in
production) until interrupted.

While it runs it supervises them: a worker, beat or web process that dies is started again after a
backoff, and the local AWS endpoint too, followed by provisioning and the same reconciliation. A
process that keeps dying stops the stack instead of spinning.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from eventbus import outbox, replay, topology
from inventory import services as inventory_services
from orders import services as order_services
from shopbus_site.local_aws import FREEZE_HEAP_PATH, LAUNCH_TOKEN_PATH

LOCAL_CLIENT_NAME = "local stack (make run)"
LOCAL_AWS = "local-aws"

# A process that dies is started again after 1, 2, 4 … seconds, at most MAX_BACKOFF_SECONDS: quick
# after a one-off crash, and no tight loop when it dies on start-up. CRASH_LIMIT crashes within
# CRASH_WINDOW_SECONDS stop the stack: that is a fault to read in its output, not a glitch to retry.
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
CRASH_LIMIT = 5
CRASH_WINDOW_SECONDS = 120.0
# Stopped while the local AWS endpoint is down and started again once it is provisioned. Restarting is
# also the only way back for them: Celery's SQS transport does not survive its endpoint going away (the
# worker's process lives on but takes no more tasks: kombu's timer fails on every pass).
ENDPOINT_DEPENDENTS = ("worker", "beat")


@dataclass
class Child:
    name: str
    command: list[str]
    options: dict
    process: subprocess.Popen
    crashes: list[float] = field(default_factory=list)  # monotonic times, within the crash window
    restart_at: float | None = None  # set while it waits out its backoff
    held: bool = False  # stopped until the local AWS endpoint is back


class ForeignEndpoint(CommandError):
    """The local AWS port is answered by something this stack did not launch."""


class EndpointExited(CommandError):
    """The local AWS endpoint this stack launched exited before it answered."""


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
        # gunicorn's most (its default, 4094 bytes, answered a list query within the contract's limits
        # with an HTML 414: two 200-character filters of 4-byte characters, percent-encoded).
        "--limit-request-line=8190",
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
    _post(f"{endpoint}/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})


def _freeze_endpoint_heap(endpoint: str) -> None:
    """What provisioning had moto build (its backends, the queues, the bus and its rules) lives as long
    as moto does (shopbus_site.heap)."""
    _post(f"{endpoint}{FREEZE_HEAP_PATH}", {})


def _post(url: str, body: dict) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
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
        self.children: list[Child] = []
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
            self._wait_for_worker(timeout=60)
            self._announce(login, key)
            self._supervise()
        finally:
            self._stop_all()

    # --- start-up -----------------------------------------------------------------------------

    def _start(self) -> tuple[tuple[str, str], str]:
        self.stdout.write(f"Starting moto's server on 127.0.0.1:{settings.LOCAL_AWS_PORT} …")
        # Open for as long as the stack runs.
        self.local_aws_log = (settings.LOCAL_DIR / "local-aws.log").open("ab")
        self._start_local_aws()
        # Children resolve settings afresh; pin them to this endpoint whatever their environment says.
        os.environ["AWS_ENDPOINT_URL"] = settings.AWS_ENDPOINT_URL
        call_command("migrate", interactive=False, verbosity=0)
        self._provision()
        inventory_services.load_demo_catalogue()
        login = self._ensure_admin()
        key = self._local_api_key()
        # Said early too, for whoever is watching; the full announcement follows once all is up.
        self.stdout.write(f"Admin login {login[0]} / {login[1]}; API key {key}")
        self._reconcile()
        outbox.relay_pending()  # anything committed while the stack was down goes out now
        celery = [sys.executable, "-m", "celery", "-A", "shopbus_site"]
        # DEBUG is for the web process's error pages; in the worker and beat it would only keep a query
        # log of every statement, CPU spent on every delivery (docs/performance.md).
        self.worker_ready_file = settings.LOCAL_DIR / "worker-ready"
        self.worker_ready_file.unlink(missing_ok=True)
        background = {
            **os.environ,
            "DEBUG": "false",
            "SECRET_KEY": settings.SECRET_KEY,
            "SHOPBUS_WORKER_READY_FILE": str(self.worker_ready_file),
        }
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

    def _start_local_aws(self) -> None:
        # A fresh token each launch, known only to this process and its moto: whatever answers on the
        # port must say it, or it is not the server this stack launched (another checkout's, say).
        self.launch_token = secrets.token_hex(16)
        self._spawn(
            LOCAL_AWS,
            [sys.executable, "-m", "shopbus_site.local_aws", "-H", "127.0.0.1", "-p", str(settings.LOCAL_AWS_PORT)],
            stdout=self.local_aws_log,
            stderr=subprocess.STDOUT,
            # moto's Step Functions calls EventBridge back through this port (ORDER_SAGA=stepfunctions).
            env={**os.environ, "MOTO_PORT": str(settings.LOCAL_AWS_PORT), "SHOPBUS_LAUNCH_TOKEN": self.launch_token},
        )
        self._wait_for_own_endpoint(timeout=30)
        _enable_state_machine_execution(settings.AWS_ENDPOINT_URL)

    def _provision(self) -> None:
        call_command("provision_aws", stdout=self.stdout)
        _freeze_endpoint_heap(settings.AWS_ENDPOINT_URL)

    def _wait_for_own_endpoint(self, timeout: float) -> None:
        """Until the endpoint answers with this launch's token. Anything else answering is refused before
        a single resource is provisioned on it."""
        port = settings.LOCAL_AWS_PORT
        moto = self._child(LOCAL_AWS).process
        url = f"{settings.AWS_ENDPOINT_URL}{LAUNCH_TOKEN_PATH}"
        foreign = ForeignEndpoint(
            f"127.0.0.1:{port} (LOCAL_AWS_PORT) is answered by a server this stack did not launch: another "
            f"checkout's `make run`, a bench, or another program holds the port. Stop it, or set LOCAL_AWS_PORT "
            f"to a free port. (Nothing was provisioned on it.)"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    answer = response.read().decode(errors="replace").strip()
            except urllib.error.HTTPError:
                raise foreign from None  # something answers, without our route: not our server
            except OSError:
                if moto.poll() is not None:
                    if _port_in_use(port):
                        raise foreign from None  # ours could not bind: someone took the port meanwhile
                    raise EndpointExited(
                        f"the local AWS endpoint exited with status {moto.returncode} while starting; "
                        f"see {settings.LOCAL_DIR / 'local-aws.log'}"
                    ) from None
                time.sleep(0.1)
                continue
            if answer != self.launch_token:
                raise foreign
            return
        raise CommandError(f"the local AWS endpoint did not answer on 127.0.0.1:{port} within {timeout:.0f}s")

    def _reconcile(self) -> None:
        """Deliver again what no handler processed: a restarted endpoint starts with empty queues."""
        sent = replay.reconcile()
        total = sum(sent.values())
        if total:
            by_service: dict[str, int] = {}
            for (service, _), count in sent.items():
                by_service[service] = by_service.get(service, 0) + count
            detail = ", ".join(f"{service} {count}" for service, count in sorted(by_service.items()))
            self.stdout.write(f"Reconciled: delivered {total} unprocessed event(s) again ({detail}).")
        else:
            self.stdout.write("Reconciled: every published event was processed by each service subscribing to it.")

    def _wait_for_worker(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.worker_ready_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    def _announce(self, login: tuple[str, str], key: str) -> None:
        web = f"http://127.0.0.1:{settings.WEB_PORT}"
        details = (
            f"  Site:       {web}/\n"
            f"  Admin:      {web}/admin/   login {login[0]} / {login[1]}\n"
            f"  API:        {web}/api/     key  {key}\n"
            f"  API docs:   {web}/api/docs\n"
            f"  Local AWS:  {settings.AWS_ENDPOINT_URL}  (bus {topology.bus_name()})\n"
            f"  Saga:       {settings.ORDER_SAGA}\n"
            f"  Try:        curl -s -H 'Authorization: Bearer {key}' {web}/api/products\n"
        )
        # Kept where a second terminal can read it, however far the log has scrolled.
        announced_at = settings.LOCAL_DIR / "stack.txt"
        _write_private(announced_at, details)
        self.stdout.write(
            self.style.SUCCESS(f"\nshopbus is running.\n{details}Also in {announced_at}. Ctrl-C stops everything.\n")
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
            _write_private(remembered_at, plaintext + "\n")
        return plaintext

    # --- supervision --------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], **options) -> None:
        # A session of their own: the terminal's Ctrl-C reaches only this supervisor, which then
        # stops the children in order (moto last, so the worker can finish talking to it).
        process = subprocess.Popen(command, start_new_session=True, cwd=settings.BASE_DIR, **options)
        self.stdout.write(f"{name} started (pid {process.pid})")
        for child in self.children:
            if child.name == name:
                child.process, child.restart_at, child.held = process, None, False
                return
        self.children.append(Child(name, command, options, process))

    def _child(self, name: str) -> Child:
        return next(child for child in self.children if child.name == name)

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _supervise(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                if child.held:
                    continue
                if child.restart_at is not None:
                    if now >= child.restart_at and not self.stopping:
                        self._restart(child)
                elif child.process.poll() is not None:
                    self._crashed(child, now)
            time.sleep(0.5)

    def _crashed(self, child: Child, now: float) -> None:
        status = child.process.returncode
        # Whatever the dead process left in its session (gunicorn's workers) would hold its port.
        _kill_session(child.process)
        child.crashes = [at for at in child.crashes if now - at < CRASH_WINDOW_SECONDS] + [now]
        if len(child.crashes) >= CRASH_LIMIT:
            raise CommandError(
                f"{child.name} exited with status {status}, its {len(child.crashes)}th crash within "
                f"{CRASH_WINDOW_SECONDS:.0f}s; stopping the stack (its output above says why)"
            )
        backoff = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (len(child.crashes) - 1))
        lost = " (its queues are gone with it: provisioning and reconciling once it is back)"
        self.stderr.write(
            f"{child.name} (pid {child.process.pid}) exited with status {status}; restarting it in {backoff:.0f}s"
            + (lost if child.name == LOCAL_AWS else "")
        )
        child.restart_at = now + backoff
        if child.name == LOCAL_AWS:
            # Until it is back, the worker and beat could only fail, and if another server took the port
            # meanwhile they would talk to it (Celery would create its queue there).
            # Killed, not asked to stop: a graceful stop would wait on the dead endpoint for up to 20s
            # each, talking to whatever took the port meanwhile. What they held is redelivered on
            # restart (reconcile), and a charge cut short is finished with its idempotency key.
            for name in ENDPOINT_DEPENDENTS:
                dependent = self._child(name)
                if dependent.process.poll() is None:
                    _kill_session(dependent.process)
                    dependent.process.wait()
                dependent.held = True

    def _restart(self, child: Child) -> None:
        if child.name != LOCAL_AWS:
            self._spawn(child.name, child.command, **child.options)
            if child.name == "worker":
                # What the dead worker had received comes back only after its queue's visibility
                # timeout (five minutes for orders); delivered again now, the originals are duplicates.
                self._reconcile()
            return
        try:
            self._start_local_aws()
        except EndpointExited as exc:
            self.stderr.write(str(exc))
            return  # the next pass of the loop counts it as another crash
        self._provision()
        for name in ENDPOINT_DEPENDENTS:
            self._spawn(name, self._child(name).command, **self._child(name).options)
        self._reconcile()
        outbox.relay_pending()

    def _stop_all(self) -> None:
        if not getattr(self, "children", None):
            return
        self.stdout.write("\nStopping …")
        for child in reversed(self.children):
            self._stop(child)
        self.children = []
        self.stdout.write("Stopped.")

    def _stop(self, child: Child) -> None:
        process = child.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{child.name} did not stop in 20s; killing it")
                process.kill()
                process.wait()


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: it holds a login or a key."""
    path.touch(mode=0o600)
    path.write_text(text)


def _kill_session(process: subprocess.Popen) -> None:
    """SIGKILL what is left of an exited child's session (its process group, as _spawn starts it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left
        os.killpg(process.pid, signal.SIGKILL)
