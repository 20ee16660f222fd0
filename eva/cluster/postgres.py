"""A PostgreSQL server of Eva's own, for a trial cluster and for the tests: Debian's
binaries (the ``postgresql`` package), ``initdb`` into a directory, one loopback port.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user the
package creates (or ``nobody``), in a directory that user owns; as anyone else, as them.
A production deployment uses its own PostgreSQL instead (docs/scaling.md).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

# initdb takes ~2 s and a first start under a second on 2 cores; this is for a busy machine.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
SUPERUSER = "eva"
# For throwaway servers (the tests): durability is not what they measure, and without
# fsync initdb and each CREATE DATABASE are several times faster.
UNSAFE_FAST_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def postgres_bindir() -> Path | None:
    """Where initdb and postgres are: pg_config's answer, else Debian's newest version."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(found.stdout.strip())
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    return None


class LocalPostgres:
    """One postgres process on 127.0.0.1:``port`` over ``root``/data, trusting local
    connections (it listens on loopback only)."""

    def __init__(
        self, root: Path, port: int, options: Sequence[str] = (), bindir: Path | None = None
    ) -> None:
        found = bindir or postgres_bindir()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
        self.bindir = found
        self.root = root
        self.port = port
        self.options = tuple(options)
        self.log_path = root / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, object] = {}
        root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = _unprivileged_user()
            os.chown(root, user.pw_uid, user.pw_gid)
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def start(self) -> LocalPostgres:
        data = self.root / "data"
        if not (data / "PG_VERSION").exists():  # a trial cluster keeps its data across runs
            self._run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                      "--encoding=UTF8", "--locale=C", "--no-sync")  # fmt: skip
        options = [arg for option in self.options for arg in ("-c", option)]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.root), *options],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True,
                **self._as,  # type: ignore[call-overload]
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start:\n{self.log_tail()}") from None
                time.sleep(0.1)

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """The database ``name`` (made if missing); its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # fast shutdown: disconnect everyone
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bindir / program), *args], capture_output=True, text=True,
            cwd=self.root, **self._as,  # type: ignore[call-overload]
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed:\n{done.stdout}{done.stderr}")


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")
