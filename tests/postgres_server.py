"""Run a command against a throwaway PostgreSQL server:  python -m tests.postgres_server -- CMD ...

`make test` uses it for the tests marked `postgres` (row locks and concurrency need a real server).
With TEST_DATABASE_URL set, that server is used instead. Without server binaries, it says so and
skips, except under CI (CI=true), where .ci/run installs them and a skip would hide a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def _binary(name: str) -> str | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[4]))
    return str(candidates[-1]) if candidates else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package creates a 'postgres' user for it.
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _skip_or_fail(reason: str) -> int:
    if os.environ.get("CI"):
        print(f"PostgreSQL tests cannot run: {reason}", file=sys.stderr)
        return 1
    print(
        f"SKIPPED the PostgreSQL tests: {reason}. "
        "Install it with `apt-get install postgresql`, or set TEST_DATABASE_URL."
    )
    return 0


def main(command: list[str]) -> int:
    if os.environ.get("TEST_DATABASE_URL"):
        return subprocess.call(command, env={**os.environ, "DATABASE_URL": os.environ["TEST_DATABASE_URL"]})
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        return _skip_or_fail("no PostgreSQL server binaries on this machine")
    if os.geteuid() == 0:
        try:
            server_user = pwd.getpwnam("postgres")
        except KeyError:
            return _skip_or_fail("running as root and there is no 'postgres' user to run the server as")
    workdir = Path(tempfile.mkdtemp(prefix="shopbus-pg-"))
    data, port = workdir / "data", _free_port()
    if os.geteuid() == 0:
        os.chown(workdir, server_user.pw_uid, server_user.pw_gid)
    try:
        subprocess.run(
            _as_server_user([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(workdir / "server.log"), "-w", "start"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        log = workdir / "server.log"
        detail = log.read_text()[-500:] if log.exists() else str(exc)
        shutil.rmtree(workdir, ignore_errors=True)
        return _skip_or_fail(f"the throwaway server did not start: {detail}")
    try:
        url = f"postgres://postgres@127.0.0.1:{port}/shopbus"
        print(f"PostgreSQL test server on 127.0.0.1:{port}")
        return subprocess.call(command, env={**os.environ, "DATABASE_URL": url})
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), stdout=subprocess.DEVNULL
        )
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments:
        sys.exit("usage: python -m tests.postgres_server -- COMMAND ...")
    sys.exit(main(arguments))
