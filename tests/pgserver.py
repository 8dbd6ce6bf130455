"""A throwaway PostgreSQL server for tests: `initdb` into a temporary directory, started on a free
loopback port (or on another address, behind a command prefix such as `ip netns exec NS`),
stopped and removed at the end. `create_database()` gives each test a database of
its own on it.

PostgreSQL refuses to run as root. As root, the server's commands run as the `postgres` system
user (`runuser`) in a directory chowned to it; as anyone else, as that user. The binaries are the
newest of /usr/lib/postgresql/*/bin (Debian's layout), or HERDER_PG_BIN.

`unavailable()` says why no server can be started here (None when one can); the fixtures skip
with that reason, or fail when CI is set. Imports the stdlib and psycopg.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

#: Debian installs each major version's binaries here
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
BIN_ENV = "HERDER_PG_BIN"
#: the system user the server runs as when we are root
SERVER_USER = "postgres"
#: the superuser initdb creates; trust auth on loopback, so no password
SUPERUSER = "postgres"
START_TIMEOUT = 60
#: bytes a RAM disk must have free to hold the server's files
SCRATCH_ROOM = 2 * 1024**3
#: tries to start on a free port (another process may take the one picked before we bind it)
START_TRIES = 3
#: durability is not what these tests check: no fsync, no waiting for the WAL
_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
#: PostgreSQL's defaults for what _SETTINGS turns off: a commit is on disk when it returns
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def bin_dir() -> Path | None:
    """The directory of initdb, pg_ctl and postgres: HERDER_PG_BIN, or the newest installed."""
    if os.environ.get(BIN_ENV):
        return Path(os.environ[BIN_ENV])

    def major(path: str) -> float:
        version = Path(path).parent.name
        return float(version) if version.replace(".", "", 1).isdigit() else 0.0

    for found in sorted(glob.glob(PG_BIN_GLOB), key=major, reverse=True):
        if all(os.access(Path(found, name), os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return Path(found)
    return None


def unavailable() -> str | None:
    """Why a server cannot be started here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    found = bin_dir()
    if found is None:
        return (f"no PostgreSQL binaries in {PG_BIN_GLOB} (apt-get install postgresql, or "
                f"`make test-deps` as root; or set {BIN_ENV})")
    if not all(os.access(found / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
        return f"{found} lacks initdb, pg_ctl or postgres"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


def scratch_dir() -> str | None:
    """Where the server's files go: a RAM disk when there is one (/dev/shm): CREATE DATABASE,
    which each test runs, took ~250 ms on this machine's disk even with fsync off, ~25 ms there.
    Only with room for a session's databases (~8 MB each); else None: the system's temporary
    directory."""
    shm = "/dev/shm"
    if not (os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK)):
        return None
    room = os.statvfs(shm)
    return shm if room.f_bavail * room.f_frsize >= SCRATCH_ROOM else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """`with PostgresServer() as server: url = server.create_database()`."""

    def __init__(self, bin_path: Path | None = None, settings: dict[str, str] | None = None,
                 on_disk: bool = False, host: str = "127.0.0.1",
                 command_prefix: Sequence[str] = (), clients: str | None = None) -> None:
        """`settings`: server settings over the tests' own (_SETTINGS: no fsync), e.g. a
        benchmark's durable ones (`DURABLE`). `on_disk`: the files in the system's temporary
        directory, never on a RAM disk, where an fsync costs nothing. `host`: the address it
        listens on; `command_prefix`: argv in front of its commands, such as `ip netns exec NS`
        for a server on another (simulated) host; `clients`: a network (CIDR) whose hosts it
        trusts, besides loopback."""
        found = bin_path or bin_dir()
        self.settings = {**_SETTINGS, "listen_addresses": host, **(settings or {})}
        self.host = host
        self.command_prefix = tuple(command_prefix)
        self.clients = clients
        self.on_disk = on_disk
        if found is None:
            raise RuntimeError(unavailable() or "no PostgreSQL binaries")
        self.bin = found
        self.port = 0
        self.dir: Path | None = None
        self._names = itertools.count(1)
        self._admin: Any = None  # a psycopg.Connection to the `postgres` database

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> None:
        # Not under pytest's tmp_path: that is private to root (0700), and the server's user
        # must be able to reach its directory.
        where = None if self.on_disk else scratch_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="herder-pg-", dir=where))
        try:
            self._own(self.dir)
            self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                      "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
            if self.clients:
                with open(self.data / "pg_hba.conf", "a") as hba:
                    hba.write(f"host all all {self.clients} trust\n")
            for attempt in range(START_TRIES):
                self.port = free_port()
                try:
                    self._pg_ctl_start()
                    break
                except RuntimeError:
                    if attempt == START_TRIES - 1:
                        raise
            import psycopg

            self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop at once (no checkpoint: the data goes anyway) and remove the directory."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        if self.dir is None:
            return
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------------

    @property
    def data(self) -> Path:
        assert self.dir is not None, "the server is not started"
        return self.dir / "data"

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "herder_test") -> str:
        """A new empty database; its URL."""
        from psycopg import sql

        assert self._admin is not None, "the server is not started"
        name = f"{prefix}_{next(self._names)}"
        self._admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def terminate_connections(self, database: str) -> int:
        """Close every connection to `database` from the server's side (as a restart of the
        server or a network cut would); how many there were."""
        assert self._admin is not None, "the server is not started"
        rows = self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
        return len(rows)

    def connections(self, database: str) -> int:
        """How many connections the server has to `database` (ours to the server not counted)."""
        assert self._admin is not None, "the server is not started"
        row = self._admin.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
        return int(row[0]) if row else 0

    def client_addresses(self, database: str) -> set[str]:
        """The addresses the connections to `database` come from (ours to the server not
        counted; none for a Unix socket)."""
        assert self._admin is not None, "the server is not started"
        rows = self._admin.execute(
            "SELECT DISTINCT client_addr FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND client_addr IS NOT NULL",
            (database,),
        ).fetchall()
        return {str(row[0]) for row in rows}

    # -- commands ------------------------------------------------------------------------------

    def _pg_ctl_start(self) -> None:
        assert self.dir is not None
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        log = self.dir / "server.log"
        try:
            self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "-t", str(START_TIMEOUT),
                "-o", f"-p {self.port} -k {self.dir} {options}", "start",
                timeout=START_TIMEOUT + 10,
            )
        except RuntimeError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{exc}\nserver log:\n{tail}") from None

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run(self, program: str, *args: str, timeout: float = 120) -> None:
        argv = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        argv = [*self.command_prefix, *argv]
        started = time.monotonic()
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} exited with {done.returncode} after "
                f"{time.monotonic() - started:.1f} s: {(done.stderr or done.stdout).strip()}"
            )
